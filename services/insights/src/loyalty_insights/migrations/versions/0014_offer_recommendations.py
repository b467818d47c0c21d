"""Personalised offers (`adapters/offers.py`): the item-to-item similarities of rewards and coupon
templates (`offer_similarities`, each offer's nearest others) and each offer's popularity by unit
and RFM segment (`offer_popularity`), both rebuilt by every refresh of the members' figures.
Empty until the next refresh.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLES = (
    """
    CREATE TABLE offer_similarities (
        kind        text NOT NULL,
        code        text NOT NULL,
        other_kind  text NOT NULL,
        other_code  text NOT NULL,
        score       double precision NOT NULL,
        co_members  bigint NOT NULL,
        PRIMARY KEY (kind, code, other_kind, other_code)
    )
    """,
    """
    CREATE TABLE offer_popularity (
        unit     text NOT NULL,
        segment  text NOT NULL,
        kind     text NOT NULL,
        code     text NOT NULL,
        members  bigint NOT NULL,
        share    double precision NOT NULL,
        PRIMARY KEY (unit, segment, kind, code)
    )
    """,
    "CREATE INDEX offer_popularity_ranked ON offer_popularity (unit, segment, share DESC)",
)


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)


def downgrade() -> None:
    for table in ("offer_popularity", "offer_similarities"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
