"""Journeys' and challenges' keys: the stable names a programme file gives them (unique when
set).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE journeys ADD COLUMN key text")
    op.execute("CREATE UNIQUE INDEX journeys_key ON journeys (key) WHERE key IS NOT NULL")
    op.execute("ALTER TABLE challenges ADD COLUMN key text")
    op.execute("CREATE UNIQUE INDEX challenges_key ON challenges (key) WHERE key IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX challenges_key")
    op.execute("ALTER TABLE challenges DROP COLUMN key")
    op.execute("DROP INDEX journeys_key")
    op.execute("ALTER TABLE journeys DROP COLUMN key")
