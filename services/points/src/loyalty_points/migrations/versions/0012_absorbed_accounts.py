"""The members merged into a survivor, found by the survivor (its referral code is theirs
while it has none of its own).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX accounts_by_survivor ON accounts (merged_into) WHERE merged_into IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX accounts_by_survivor")
