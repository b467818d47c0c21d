"""Journeys' uplift and badges in segments: members' entries into engagement's journeys
(`journey_entries`, from JourneyEntered: each member once a journey, treatment or control) and
the badges a member holds (`member_figures.badges`, from BadgeEarned and BadgeRevoked), which
segment rules look at.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE journey_entries (
            member_id   text NOT NULL,
            journey_id  text NOT NULL,
            entered_at  timestamptz NOT NULL,
            control     boolean NOT NULL,
            unit        text NOT NULL,
            PRIMARY KEY (member_id, journey_id)
        )
        """
    )
    op.execute("CREATE INDEX journey_entries_journey ON journey_entries (journey_id, control)")
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.execute("ALTER TABLE member_figures ADD COLUMN badges text[] NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE member_figures DROP COLUMN badges")
    op.execute("DROP TABLE IF EXISTS journey_entries")
