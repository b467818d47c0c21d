"""activity_orders: whose activity counted each unit's order, one row per (unit, order ID), so an
order's spend and visit count once whether it comes from a points earn (PointsEarned, `event_id`
its posting id) or from an import of past orders (identity's LegacyOrdersImported, `event_id`
'order:<unit>/<order ID>', `order_import` the import). Orders counted before this revision have
no row: an import that brings one of them again counts it again.

Keyed by the order, not by the member: one order belongs to one purchase whoever it was
recorded for, and merges move activity without touching it.

upgrades_due: members whose imported orders may upgrade them, a row per chunk that marked the
member (only inserted: a chunk never waits for another, nor for the upgrade job), taken by the
upgrade job once a member's latest mark is a few seconds old (ids and times only).

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
    op.execute(
        """
        CREATE TABLE upgrades_due (
            member_id uuid NOT NULL,
            marked_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX upgrades_due_member ON upgrades_due (member_id, marked_at)")


def downgrade() -> None:
    op.execute("DROP TABLE upgrades_due, activity_orders")
