"""Business-unit API clients: one unit, scopes, a hashed secret, a rate limit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_clients (
            client_id      text PRIMARY KEY,
            unit           text NOT NULL,
            scopes         text[] NOT NULL,
            secret_hash    text NOT NULL,
            description    text NOT NULL DEFAULT '',
            rate_per_second integer NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now(),
            rotated_at     timestamptz,
            revoked_at     timestamptz
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE api_clients")
