"""Each member's figures, kept as a table the dashboards read (adapters/tables.py says why).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE member_figures (
        member_id           text PRIMARY KEY,
        updated_at          timestamptz NOT NULL,
        registered_at       timestamptz,
        registered_unit     text,
        first_active_at     timestamptz,
        last_active_at      timestamptz,
        units               text[] NOT NULL DEFAULT '{}',
        units_12m           text[] NOT NULL DEFAULT '{}',
        visits_12m          integer NOT NULL DEFAULT 0,
        spend_12m           numeric NOT NULL DEFAULT 0,
        recency_days        integer,
        rfm_r               smallint,
        rfm_f               smallint,
        rfm_m               smallint,
        rfm_segment         text,
        tier                text,
        birthday_month      smallint,
        offers_consent      boolean NOT NULL DEFAULT true,
        tags                text[] NOT NULL DEFAULT '{}',
        predicted_value_12m numeric,
        p_alive             double precision
    )
    """,
    "CREATE INDEX member_figures_updated_at ON member_figures (updated_at)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS member_figures")
