"""badge_holdings: the badges members held and when (from engagement's BadgeEarned and
BadgeRevoked), so a campaign for a badge's holders applies to an order made while the member
held it, a receipt recorded late too.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE badge_holdings (
            member_id  uuid NOT NULL,
            badge      text NOT NULL,
            held_from  timestamptz NOT NULL,
            held_until timestamptz,
            PRIMARY KEY (member_id, badge, held_from)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE badge_holdings")
