"""Waiting entries (the step they go on from, when, what they wait for), journeys' budgets and
sweeps, members' last purchases and birthdays, and points lots' expiry (adapters/tables.py says
why).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = (
    "ALTER TABLE journey_entries ADD COLUMN next_step integer NOT NULL DEFAULT 0",
    "ALTER TABLE journey_entries ADD COLUMN due_at timestamptz",
    "ALTER TABLE journey_entries ADD COLUMN waiting text NOT NULL DEFAULT ''",
    "ALTER TABLE journey_entries ADD COLUMN purchased_at timestamptz",
    "CREATE INDEX journey_entries_due ON journey_entries (due_at) WHERE state = 'waiting'",
    "CREATE INDEX journey_entries_purchase ON journey_entries (member_id) "
    "WHERE state = 'waiting' AND waiting = 'purchase'",
    """
    CREATE TABLE journey_budgets (
        journey_id    text PRIMARY KEY,
        points_spent  bigint NOT NULL,
        coupons_spent bigint NOT NULL
    )
    """,
    """
    CREATE TABLE journey_sweeps (
        journey_id  text PRIMARY KEY,
        swept_until timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE member_activity (
        member_id        text PRIMARY KEY,
        last_purchase_at timestamptz,
        birthday_month   integer NOT NULL DEFAULT 0,
        birthday_day     integer NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX member_activity_last_purchase ON member_activity (last_purchase_at)",
    "CREATE INDEX member_activity_birthday ON member_activity (birthday_month, birthday_day)",
    """
    CREATE TABLE member_lots (
        lot_id     text PRIMARY KEY,
        member_id  text NOT NULL,
        points     bigint NOT NULL,
        expires_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX member_lots_expiring ON member_lots (expires_at) WHERE points > 0",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in ("member_lots", "member_activity", "journey_sweeps", "journey_budgets"):
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP INDEX journey_entries_purchase")
    op.execute("DROP INDEX journey_entries_due")
    for column in ("purchased_at", "waiting", "due_at", "next_step"):
        op.execute(f"ALTER TABLE journey_entries DROP COLUMN {column}")
