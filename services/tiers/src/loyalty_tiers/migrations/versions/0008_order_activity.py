"""activity_orders: whose activity counted each unit's order, one row per (unit, order ID), so an
order's spend and visit count once whether it comes from a points earn (PointsEarned, `event_id`
its posting id) or from an import of past orders (identity's LegacyOrdersImported, `event_id`
'order:<unit>/<order ID>', `order_import` the import). Orders counted before this revision have
no row: an import that brings one of them again counts it again.

Keyed by the order, not by the member: one order belongs to one purchase whoever it was
recorded for, and merges move activity without touching it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE activity_orders (
            unit         text NOT NULL,
            order_id     text NOT NULL,
            event_id     text NOT NULL,
            order_import text NOT NULL DEFAULT '',
            PRIMARY KEY (unit, order_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE activity_orders")
