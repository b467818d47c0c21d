"""A member's time zone on the profile (an IANA name, '' when not known): engagement reads it
from ProfileChanged to keep journeys' quiet hours in the member's local time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE profiles ADD COLUMN time_zone text NOT NULL DEFAULT ''")


def downgrade() -> None:
    op.execute("ALTER TABLE profiles DROP COLUMN time_zone")
