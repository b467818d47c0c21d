"""The webhook channel: endpoints per unit and purpose (secrets sealed), deliveries (an outbox
with attempts and a dead letter), and messages' unsubscribe tokens by hash
(adapters/tables.py says why).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE webhook_endpoints (
        unit          text NOT NULL,
        purpose       text NOT NULL,
        url           text NOT NULL,
        secret_sealed bytea NOT NULL,
        updated_at    timestamptz NOT NULL,
        PRIMARY KEY (unit, purpose)
    )
    """,
    """
    CREATE TABLE deliveries (
        message_id      text PRIMARY KEY,
        member_id       text NOT NULL,
        unit            text NOT NULL,
        purpose         text NOT NULL,
        url             text NOT NULL,
        payload         text NOT NULL,
        state           text NOT NULL,
        attempts        integer NOT NULL,
        last_error      text NOT NULL,
        next_attempt_at timestamptz NOT NULL,
        created_at      timestamptz NOT NULL,
        delivered_at    timestamptz
    )
    """,
    "CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX deliveries_listed ON deliveries (created_at, message_id)",
    "CREATE INDEX deliveries_member ON deliveries (member_id)",
    """
    CREATE TABLE unsubscribe_tokens (
        token_hash text PRIMARY KEY,
        message_id text NOT NULL,
        member_id  text NOT NULL,
        purpose    text NOT NULL,
        created_at timestamptz NOT NULL,
        used_at    timestamptz
    )
    """,
    "CREATE INDEX unsubscribe_tokens_member ON unsubscribe_tokens (member_id)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in ("unsubscribe_tokens", "deliveries", "webhook_endpoints"):
        op.execute(f"DROP TABLE {table}")
