"""Journeys, their versions, entries, step runs, the development sink's messages and members'
tiers (adapters/tables.py says why).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE journeys (
        journey_id   text PRIMARY KEY,
        unit         text NOT NULL,
        state        text NOT NULL,
        version      integer NOT NULL,
        trigger_kind text NOT NULL,
        created_at   timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL
    )
    """,
    "CREATE INDEX journeys_trigger ON journeys (trigger_kind) WHERE state <> 'draft'",
    """
    CREATE TABLE journey_versions (
        journey_id text NOT NULL,
        version    integer NOT NULL,
        spec       jsonb NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (journey_id, version)
    )
    """,
    """
    CREATE TABLE journey_entries (
        entry_id    text PRIMARY KEY,
        journey_id  text NOT NULL,
        version     integer NOT NULL,
        member_id   text NOT NULL,
        trigger_key text NOT NULL,
        unit        text NOT NULL,
        state       text NOT NULL,
        entered_at  timestamptz NOT NULL,
        updated_at  timestamptz NOT NULL,
        UNIQUE (journey_id, version, member_id, trigger_key)
    )
    """,
    "CREATE INDEX journey_entries_member ON journey_entries (journey_id, member_id, entered_at)",
    "CREATE INDEX journey_entries_listed ON journey_entries (journey_id, entered_at, entry_id)",
    "CREATE INDEX journey_entries_pending ON journey_entries (journey_id, entered_at) "
    "WHERE state = 'pending'",
    """
    CREATE TABLE step_runs (
        entry_id text NOT NULL,
        step     integer NOT NULL,
        outcome  text NOT NULL,
        detail   text NOT NULL,
        ran_at   timestamptz NOT NULL,
        PRIMARY KEY (entry_id, step)
    )
    """,
    """
    CREATE TABLE messages (
        message_id        text PRIMARY KEY,
        entry_id          text NOT NULL,
        step              integer NOT NULL,
        journey_id        text NOT NULL,
        member_id         text NOT NULL,
        channel           text NOT NULL,
        purpose           text NOT NULL,
        body              text NOT NULL,
        unsubscribe_token text NOT NULL,
        sent_at           timestamptz NOT NULL,
        UNIQUE (entry_id, step)
    )
    """,
    "CREATE INDEX messages_member ON messages (member_id, sent_at)",
    "CREATE INDEX messages_sent ON messages (sent_at, message_id)",
    """
    CREATE TABLE member_tiers (
        member_id    text PRIMARY KEY,
        tier         text NOT NULL,
        effective_at timestamptz NOT NULL
    )
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in (
        "member_tiers",
        "messages",
        "step_runs",
        "journey_entries",
        "journey_versions",
        "journeys",
    ):
        op.execute(f"DROP TABLE {table}")
