"""origin_member_id on coupons, consumptions and reward redemptions: the member they came from
when a merge moved them to the survivor (NULL: the holder's own), so an unmerge gives them back.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("coupons", "consumptions", "reward_redemptions")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ADD COLUMN origin_member_id uuid")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN origin_member_id")
