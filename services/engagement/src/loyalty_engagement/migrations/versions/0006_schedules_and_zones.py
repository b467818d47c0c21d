"""Segments' members (insights' SegmentEntered / SegmentLeft, for journeys on a schedule over a
segment) and members' time zones (identity's ProfileChanged, for quiet hours in the member's
zone) (adapters/tables.py says why).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE segment_members (
        segment    text NOT NULL,
        member_id  text NOT NULL,
        present    boolean NOT NULL,
        changed_at timestamptz NOT NULL,
        PRIMARY KEY (segment, member_id)
    )
    """,
    "CREATE INDEX segment_members_member ON segment_members (member_id)",
    "ALTER TABLE member_activity ADD COLUMN time_zone text NOT NULL DEFAULT ''",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE member_activity DROP COLUMN time_zone")
    op.execute("DROP TABLE segment_members")
