"""merged_members: who was absorbed into whom, so an absorbed member's id is refused with the
survivor named (MEMBER_MERGED) instead of reading as a new basic member.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE merged_members (
            member_id   uuid PRIMARY KEY,
            merged_into uuid NOT NULL,
            merged_at   timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX merged_members_into ON merged_members (merged_into)")


def downgrade() -> None:
    op.execute("DROP TABLE merged_members")
