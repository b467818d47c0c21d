"""The facts of every service's events, keyed by member (adapters/tables.py says why).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE ledger_postings (
        member_id   text NOT NULL,
        posting_id  text NOT NULL,
        kind        text NOT NULL,
        unit        text NOT NULL,
        points      bigint NOT NULL,
        posted_at   timestamptz NOT NULL,
        occurred_at timestamptz NOT NULL,
        PRIMARY KEY (member_id, posting_id)
    )
    """,
    "CREATE INDEX ledger_postings_posted ON ledger_postings (posted_at)",
    """
    CREATE TABLE lot_movements (
        member_id      text NOT NULL,
        posting_id     text NOT NULL,
        lot_id         text NOT NULL,
        kind           text NOT NULL,
        posting_points bigint NOT NULL,
        earned_unit    text NOT NULL,
        unit           text NOT NULL,
        points         bigint NOT NULL,
        posted_at      timestamptz NOT NULL,
        expires_at     timestamptz,
        PRIMARY KEY (member_id, posting_id, lot_id)
    )
    """,
    "CREATE INDEX lot_movements_posted ON lot_movements (posted_at)",
    """
    CREATE TABLE programmes (
        version        bigint PRIMARY KEY,
        effective_from timestamptz NOT NULL,
        base_currency  text NOT NULL,
        point_value    numeric NOT NULL
    )
    """,
    "CREATE TABLE known_units (unit text PRIMARY KEY)",
    """
    CREATE TABLE activity (
        member_id   text NOT NULL,
        kind        text NOT NULL,
        event_id    text NOT NULL,
        unit        text NOT NULL,
        occurred_at timestamptz NOT NULL,
        spend       numeric NOT NULL,
        currency    text NOT NULL,
        PRIMARY KEY (member_id, kind, event_id)
    )
    """,
    "CREATE INDEX activity_occurred ON activity (occurred_at)",
    """
    CREATE TABLE registrations (
        member_id     text PRIMARY KEY,
        unit          text NOT NULL,
        registered_at timestamptz NOT NULL,
        imported      boolean NOT NULL
    )
    """,
    """
    CREATE TABLE consents (
        member_id  text NOT NULL,
        purpose    text NOT NULL,
        granted    boolean NOT NULL,
        changed_at timestamptz NOT NULL,
        PRIMARY KEY (member_id, purpose)
    )
    """,
    """
    CREATE TABLE tier_changes (
        member_id    text NOT NULL,
        effective_at timestamptz NOT NULL,
        to_tier      text NOT NULL,
        reason       text NOT NULL,
        from_tier    text NOT NULL,
        PRIMARY KEY (member_id, effective_at, to_tier, reason)
    )
    """,
    """
    CREATE TABLE benefit_facts (
        member_id   text NOT NULL,
        kind        text NOT NULL,
        fact_id     text NOT NULL,
        code        text NOT NULL,
        unit        text NOT NULL,
        occurred_at timestamptz NOT NULL,
        PRIMARY KEY (member_id, kind, fact_id)
    )
    """,
    """
    CREATE TABLE member_merges (
        absorbed_id text PRIMARY KEY,
        survivor_id text NOT NULL,
        merged_at   timestamptz NOT NULL
    )
    """,
    "CREATE INDEX member_merges_survivor ON member_merges (survivor_id)",
    """
    CREATE TABLE erased_members (
        member_id text PRIMARY KEY,
        erased_at timestamptz NOT NULL
    )
    """,
)

TABLES = (
    "erased_members",
    "member_merges",
    "benefit_facts",
    "tier_changes",
    "consents",
    "registrations",
    "activity",
    "known_units",
    "programmes",
    "lot_movements",
    "ledger_postings",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
