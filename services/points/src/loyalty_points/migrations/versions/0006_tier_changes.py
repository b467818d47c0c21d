"""tier_changes: the tiers a member held and since when (from TierChanged), so a receipt
recorded late earns at the tier held when the purchase happened.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tier_changes (
            member_id    uuid NOT NULL,
            effective_at timestamptz NOT NULL,
            tier         text NOT NULL,
            PRIMARY KEY (member_id, effective_at)
        )
        """
    )
    # What is known of the past: each member's current tier since its change.
    op.execute(
        "INSERT INTO tier_changes (member_id, effective_at, tier) "
        "SELECT member_id, tier_effective_at, tier FROM accounts "
        "WHERE tier_effective_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE tier_changes")
