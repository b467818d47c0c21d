"""Full refreshes of the members' figures (with the quintile cut points incremental recomputes
score against), members' birthday months, and the index of a segment's member list.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE figure_refreshes (
        id          bigserial PRIMARY KEY,
        started_at  timestamptz NOT NULL,
        finished_at timestamptz NOT NULL,
        as_of       timestamptz NOT NULL,
        members     bigint NOT NULL,
        removed     bigint NOT NULL,
        r_cuts      integer[] NOT NULL,
        f_cuts      bigint[] NOT NULL,
        m_cuts      numeric[] NOT NULL
    )
    """,
    """
    CREATE TABLE birthdays (
        member_id  text PRIMARY KEY,
        month      smallint NOT NULL,
        changed_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX member_figures_segment ON member_figures (rfm_segment, member_id)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS member_figures_segment")
    op.execute("DROP TABLE IF EXISTS birthdays, figure_refreshes")
