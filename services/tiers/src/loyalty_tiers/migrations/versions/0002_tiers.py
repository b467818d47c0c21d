"""Ladder versions, qualifying activity, members' tiers and their history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE ladder_versions (
        version    bigint PRIMARY KEY,
        rules      jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # One row per points posting (event id): a redelivered or replayed event counts once,
    # and events can arrive in any order (the window sums them by occurrence time).
    """
    CREATE TABLE activity (
        member_id   uuid NOT NULL,
        event_id    text NOT NULL,
        occurred_at timestamptz NOT NULL,
        spend       numeric NOT NULL,
        points      bigint NOT NULL,
        visits      integer NOT NULL,
        PRIMARY KEY (member_id, event_id)
    )
    """,
    "CREATE INDEX activity_window ON activity (member_id, occurred_at)",
    """
    CREATE TABLE member_tiers (
        member_id     uuid PRIMARY KEY,
        tier          text NOT NULL,
        since         timestamptz NOT NULL,
        tier_year_end timestamptz
    )
    """,
    """
    CREATE TABLE tier_history (
        member_id  uuid NOT NULL,
        seq        bigserial,
        from_tier  text NOT NULL,
        to_tier    text NOT NULL,
        reason     text NOT NULL,
        changed_at timestamptz NOT NULL,
        PRIMARY KEY (member_id, seq)
    )
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE tier_history, member_tiers, activity, ladder_versions")
