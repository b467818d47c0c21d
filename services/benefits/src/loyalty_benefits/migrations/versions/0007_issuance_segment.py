"""A coupon issuance may target a dynamic segment of the insights service instead of a tag.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE coupon_issuances ADD COLUMN segment text NOT NULL DEFAULT ''")


def downgrade() -> None:
    op.execute("ALTER TABLE coupon_issuances DROP COLUMN segment")
