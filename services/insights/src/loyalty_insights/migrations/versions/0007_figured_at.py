"""Members' figures: when a row's figures were last computed (`figured_at`, apart from
`updated_at`, which tags and lifetime value move too) and which refresh's cut points scored it
(`scored_by`); adapters/member_figures.py says how a refresh uses them.

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
    # Nullable, no default: PostgreSQL adds them without rewriting the table.
    op.execute("ALTER TABLE member_figures ADD COLUMN figured_at timestamptz")
    op.execute("ALTER TABLE member_figures ADD COLUMN scored_by bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE member_figures DROP COLUMN scored_by, DROP COLUMN figured_at")
