"""Transactional messages (sign-in codes): the development sink keeps them sealed, found by the
phone's keyed hash, until they expire.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE transactional_messages (
            message_id text PRIMARY KEY,
            phone_hash text NOT NULL,
            kind text NOT NULL,
            unit text NOT NULL,
            sealed bytea NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute(
        "CREATE INDEX transactional_messages_phone ON transactional_messages "
        "(phone_hash, created_at)"
    )
    op.execute("CREATE INDEX transactional_messages_expiry ON transactional_messages (expires_at)")


def downgrade() -> None:
    op.execute("DROP TABLE transactional_messages")
