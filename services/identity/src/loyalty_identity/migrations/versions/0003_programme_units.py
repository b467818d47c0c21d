"""The business units of the loyalty programme, learned from points' ProgrammePublished:
members are registered only at one of them (once any is known).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE programme_units (
            unit        text PRIMARY KEY,
            version     integer NOT NULL,
            learned_at  timestamptz NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE programme_units")
