"""Dynamic segments, their members and the incremental evaluation's watermark
(adapters/tables.py says why).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE segments (
        segment_id   text PRIMARY KEY,
        display_name text NOT NULL,
        rule         jsonb NOT NULL,
        targeting    boolean NOT NULL,
        unit         text NOT NULL,
        member_count bigint NOT NULL,
        version      bigint NOT NULL,
        created_at   timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL,
        evaluated_at timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE segment_members (
        member_id  text NOT NULL,
        segment_id text NOT NULL,
        PRIMARY KEY (member_id, segment_id)
    )
    """,
    "CREATE INDEX segment_members_by_segment ON segment_members (segment_id, member_id)",
    """
    CREATE TABLE segment_watermarks (
        evaluator  text PRIMARY KEY,
        updated_at timestamptz NOT NULL
    )
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS segment_watermarks, segment_members, segments")
