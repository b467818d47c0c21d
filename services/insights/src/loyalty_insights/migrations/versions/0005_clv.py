"""Lifetime value fits: each fit of the models (state, progress, parameters, hold-out report)
and the predictions a running fit stages before they replace the last fit's in
`member_figures` (adapters/tables.py says why).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE clv_fits (
        fit_id       text PRIMARY KEY,
        scheduled    boolean NOT NULL,
        state        text NOT NULL,
        created_at   timestamptz NOT NULL,
        started_at   timestamptz,
        finished_at  timestamptz,
        as_of        timestamptz NOT NULL,
        holdout_days integer NOT NULL,
        members      bigint NOT NULL DEFAULT 0,
        members_done bigint NOT NULL DEFAULT 0,
        currency     text NOT NULL DEFAULT '',
        parameters   jsonb,
        holdout      jsonb,
        error        text NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX clv_fits_state ON clv_fits (state, created_at)",
    """
    CREATE TABLE clv_predictions (
        fit_id              text NOT NULL,
        member_id           text NOT NULL,
        historical_value    numeric NOT NULL,
        predicted_value_12m numeric,
        p_alive             double precision,
        PRIMARY KEY (member_id, fit_id)
    )
    """,
    "CREATE INDEX clv_predictions_fit ON clv_predictions (fit_id)",
    "ALTER TABLE member_figures ADD COLUMN historical_value numeric",
    "ALTER TABLE member_figures ADD COLUMN clv_fit_id text",
    """
    CREATE INDEX member_figures_predicted ON member_figures (predicted_value_12m DESC, member_id)
    WHERE predicted_value_12m IS NOT NULL
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS member_figures_predicted")
    op.execute("ALTER TABLE member_figures DROP COLUMN IF EXISTS clv_fit_id")
    op.execute("ALTER TABLE member_figures DROP COLUMN IF EXISTS historical_value")
    op.execute("DROP TABLE IF EXISTS clv_predictions, clv_fits")
