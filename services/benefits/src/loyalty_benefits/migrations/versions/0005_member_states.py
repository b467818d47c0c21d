"""Members who are not active (suspended, merged or erased), as identity's events told it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only members who are not active have a row (a reactivation deletes it): checking a member
    # is one primary-key lookup, which for almost every member finds nothing.
    op.execute(
        """
        CREATE TABLE member_states (
            member_id   uuid PRIMARY KEY,
            state       text NOT NULL CHECK (state IN ('suspended', 'merged', 'erased')),
            merged_into text NOT NULL DEFAULT '',
            updated_at  timestamptz NOT NULL,
            CHECK ((state = 'merged') = (merged_into <> ''))
        )
        """
    )
    # Forwarding a merge chain (members merged into one that is itself merged).
    op.execute(
        "CREATE INDEX member_states_merged_into ON member_states (merged_into) "
        "WHERE state = 'merged'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE member_states")
