"""What an unmerge needs: whose activity, grants and paid memberships a merge moved to the
survivor (`origin_member_id`, NULL for the holder's own), and both members' tiers as they
stood before the merge (`merged_members.survivor_before` / `absorbed_before`, NULL where the
member had no tier yet or the merge came before this revision).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("activity", "tier_grants", "membership_orders")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ADD COLUMN origin_member_id uuid")
    op.execute("ALTER TABLE merged_members ADD COLUMN survivor_before jsonb")
    op.execute("ALTER TABLE merged_members ADD COLUMN absorbed_before jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE merged_members DROP COLUMN absorbed_before")
    op.execute("ALTER TABLE merged_members DROP COLUMN survivor_before")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN origin_member_id")
