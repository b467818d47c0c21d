"""Purchases as challenges and leaderboards keep them, their refunds, and the challenge
periods each counted in (adapters/tables.py says why).

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE challenge_purchases (
        purchase_key text PRIMARY KEY,
        member_id    text NOT NULL,
        unit         text NOT NULL,
        spend        text NOT NULL,
        occurred_at  timestamptz NOT NULL
    )
    """,
    "CREATE INDEX challenge_purchases_member ON challenge_purchases (member_id)",
    """
    CREATE TABLE purchase_refunds (
        refund_key   text PRIMARY KEY,
        purchase_key text NOT NULL,
        member_id    text NOT NULL,
        spend        text NOT NULL,
        occurred_at  timestamptz NOT NULL
    )
    """,
    "CREATE INDEX purchase_refunds_purchase ON purchase_refunds (purchase_key)",
    "CREATE INDEX purchase_refunds_member ON purchase_refunds (member_id)",
    """
    CREATE TABLE challenge_contributions (
        challenge_id text NOT NULL,
        purchase_key text NOT NULL,
        member_id    text NOT NULL,
        period       text NOT NULL,
        PRIMARY KEY (challenge_id, purchase_key)
    )
    """,
    "CREATE INDEX challenge_contributions_progress"
    " ON challenge_contributions (challenge_id, member_id, period)",
    "CREATE INDEX challenge_contributions_purchase ON challenge_contributions (purchase_key)",
    "CREATE INDEX challenge_contributions_member ON challenge_contributions (member_id)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in ("challenge_contributions", "purchase_refunds", "challenge_purchases"):
        op.execute(f"DROP TABLE {table}")
