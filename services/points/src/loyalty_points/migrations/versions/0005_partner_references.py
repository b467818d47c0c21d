"""partner_references: a partner's transaction reference credits once, whatever the request id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE partner_references (
            partner     text NOT NULL,
            reference   text NOT NULL,
            member_id   uuid NOT NULL,
            posting_id  uuid NOT NULL,
            PRIMARY KEY (partner, reference)
        )
        """
    )
    # Exchanges already made keep their references (the first one, where one was used twice).
    op.execute(
        """
        INSERT INTO partner_references (partner, reference, member_id, posting_id)
        SELECT DISTINCT ON (unit, order_id) substr(unit, 9), order_id, member_id, posting_id
        FROM postings
        WHERE kind = 'partner_exchange_in' AND order_id <> ''
        ORDER BY unit, order_id, posted_at
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE partner_references")
