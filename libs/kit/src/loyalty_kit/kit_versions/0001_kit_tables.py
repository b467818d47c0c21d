"""The kit's tables: outbox, inbox, idempotency keys. The first revision of every service's
database, kept here once: `loyalty_kit.migrations` adds this folder to each service's own
version locations, and the service's second revision revises "0001".

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from loyalty_kit.migrations import create_kit_tables_v1, drop_kit_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kit_tables_v1()


def downgrade() -> None:
    drop_kit_tables_v1()
