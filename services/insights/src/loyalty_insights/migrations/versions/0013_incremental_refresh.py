"""What an incremental refresh needs (service_layer/refresh.py): each row's last purchase in the
window (`last_bought_at`, so its recency can move with time without its facts) and the end of
the window it was figured for (`window_end`); each refresh's kind (`from_facts`) and moment
(`since`). Refreshes recorded before this migration count as full ones without a moment: the
next refresh is a full one.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE member_figures ADD COLUMN last_bought_at timestamptz, "
        "ADD COLUMN window_end timestamptz"
    )
    op.execute(
        "ALTER TABLE figure_refreshes ADD COLUMN from_facts boolean NOT NULL DEFAULT true, "
        "ADD COLUMN since timestamptz"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE figure_refreshes DROP COLUMN IF EXISTS from_facts, DROP COLUMN IF EXISTS since"
    )
    op.execute(
        "ALTER TABLE member_figures DROP COLUMN IF EXISTS last_bought_at, "
        "DROP COLUMN IF EXISTS window_end"
    )
