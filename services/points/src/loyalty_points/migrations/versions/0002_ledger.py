"""The ledger: programme versions, accounts, postings, lots, lot movements, orders.

Every member-scoped table has member_id first in its primary key. Balances carry CHECK
constraints, so no bug and no race can make them negative.

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
    CREATE TABLE programme_versions (
        version        bigint PRIMARY KEY,
        effective_from timestamptz NOT NULL,
        rules          jsonb NOT NULL,
        reason         text NOT NULL DEFAULT '',
        created_at     timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX programme_versions_effective ON programme_versions (effective_from DESC)",
    """
    CREATE TABLE accounts (
        member_id         uuid PRIMARY KEY,
        state             text NOT NULL DEFAULT 'active',
        merged_into       uuid,
        tier              text NOT NULL DEFAULT '',
        tier_effective_at timestamptz,
        available         bigint NOT NULL DEFAULT 0 CHECK (available >= 0),
        pending           bigint NOT NULL DEFAULT 0 CHECK (pending >= 0),
        lifetime_earned   bigint NOT NULL DEFAULT 0,
        updated_at        timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE postings (
        member_id          uuid NOT NULL,
        posting_id         uuid NOT NULL,
        seq                bigserial,
        kind               text NOT NULL,
        points             bigint NOT NULL,
        pending            boolean NOT NULL DEFAULT false,
        available_at       timestamptz,
        unit               text NOT NULL,
        channel            text NOT NULL DEFAULT 'CHANNEL_UNSPECIFIED',
        order_id           text NOT NULL DEFAULT '',
        occurred_at        timestamptz NOT NULL,
        posted_at          timestamptz NOT NULL,
        programme_version  bigint,
        breakdown          jsonb,
        related_posting_id uuid,
        reason             text NOT NULL DEFAULT '',
        unrecovered_points bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (member_id, posting_id)
    )
    """,
    "CREATE INDEX postings_statement ON postings (member_id, seq DESC)",
    "CREATE INDEX postings_by_time ON postings (posted_at)",
    """
    CREATE TABLE lots (
        member_id   uuid NOT NULL,
        lot_id      uuid NOT NULL,
        posting_id  uuid NOT NULL,
        earned_unit text NOT NULL,
        points      bigint NOT NULL CHECK (points > 0),
        remaining   bigint NOT NULL CHECK (remaining >= 0 AND remaining <= points),
        status      text NOT NULL,
        earned_at   timestamptz NOT NULL,
        available_at timestamptz,
        expires_at  timestamptz,
        PRIMARY KEY (member_id, lot_id)
    )
    """,
    "CREATE INDEX lots_expiring ON lots (expires_at) WHERE status = 'open' AND remaining > 0",
    "CREATE INDEX lots_pending ON lots (available_at) WHERE status = 'pending'",
    """
    CREATE TABLE lot_movements (
        member_id   uuid NOT NULL,
        posting_id  uuid NOT NULL,
        lot_id      uuid NOT NULL,
        points      bigint NOT NULL,
        earned_unit text NOT NULL,
        unit        text NOT NULL,
        posted_at   timestamptz NOT NULL,
        PRIMARY KEY (member_id, posting_id, lot_id)
    )
    """,
    "CREATE INDEX lot_movements_by_time ON lot_movements (posted_at)",
    # One order earns once per unit, whoever the member (a POS retrying with a new request id,
    # or the same receipt scanned for two members, is refused).
    """
    CREATE TABLE orders (
        unit       text NOT NULL,
        order_id   text NOT NULL,
        member_id  uuid NOT NULL,
        posting_id uuid NOT NULL,
        lot_id     uuid NOT NULL,
        currency   text NOT NULL,
        lines      jsonb NOT NULL,
        bonus_points bigint NOT NULL DEFAULT 0,
        bonus_reversed boolean NOT NULL DEFAULT false,
        PRIMARY KEY (unit, order_id)
    )
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE orders, lot_movements, lots, postings, accounts, programme_versions")
