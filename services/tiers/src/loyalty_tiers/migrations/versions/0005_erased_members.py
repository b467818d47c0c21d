"""erased_members: members erased at the identity service, so their id is refused new grants
and memberships (MEMBER_ERASED) and leaves the tier distribution.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE erased_members (
            member_id uuid PRIMARY KEY,
            erased_at timestamptz NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE erased_members")
