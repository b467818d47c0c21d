"""Members' birthdays (month and day only, from identity's ProfileChanged).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE member_birthdays (
            member_id uuid PRIMARY KEY,
            month     smallint NOT NULL CHECK (month BETWEEN 1 AND 12),
            day       smallint NOT NULL CHECK (day BETWEEN 1 AND 31)
        )
        """
    )
    op.execute("CREATE INDEX member_birthdays_by_day ON member_birthdays (month, day, member_id)")


def downgrade() -> None:
    op.execute("DROP TABLE member_birthdays")
