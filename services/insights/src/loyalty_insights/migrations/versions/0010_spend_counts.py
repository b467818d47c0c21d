"""Members' spend by unit over the trailing 12 months (three columns of `member_figures`) and
its sums by unit (`spend_counts`), kept by statement triggers on `member_figures` in the
transaction that writes its rows (adapters/tables.py says what). Rows written before this
migration have no spend by unit until the next full refresh rewrites them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SLOTS = 16  # sums per unit, by member: concurrent recomputes rarely wait for each other

# One row's spend at each of its units: (unit, spend, bought there).
_UNITS = """
    unnest(r.spend_units_12m, r.unit_spend_12m) AS u (unit, spend)"""


def _sums(rows: str, factor: int) -> str:
    return f"""
            SELECT u.unit, hashtext(r.member_id) & {SLOTS - 1} AS slot,
                   {factor} * sum(u.spend) AS spend,
                   {factor} * count(*) FILTER (WHERE u.unit = ANY(r.bought_units_12m)) AS members
            FROM {rows} r, {_UNITS}
            GROUP BY 1, 2"""


# The sums `g` (unit, slot, spend, members) added to their counters, in key order.
_UPSERT = """
            INSERT INTO spend_counts (unit, slot, spend, members)
            SELECT unit, slot, sum(spend), sum(members) FROM g
            GROUP BY 1, 2 HAVING sum(spend) <> 0 OR sum(members) <> 0 ORDER BY 1, 2
            ON CONFLICT (unit, slot) DO UPDATE
            SET spend = spend_counts.spend + excluded.spend,
                members = spend_counts.members + excluded.members"""

STATEMENTS = (
    """
    ALTER TABLE member_figures
        ADD COLUMN spend_units_12m text[] NOT NULL DEFAULT '{}',
        ADD COLUMN unit_spend_12m numeric[] NOT NULL DEFAULT '{}',
        ADD COLUMN bought_units_12m text[] NOT NULL DEFAULT '{}'
    """,
    """
    CREATE TABLE spend_counts (
        unit    text NOT NULL,
        slot    smallint NOT NULL,
        spend   numeric NOT NULL,
        members bigint NOT NULL,
        PRIMARY KEY (unit, slot)
    )
    """,
    # The spend of the rows inserted less that of the rows deleted; an update adds its new rows'
    # and takes away its old rows', so only the rows whose spend by unit changed count (no join
    # of the transition tables: 0008_dashboard_counts says why).
    f"""
    CREATE FUNCTION member_figures_spent() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            WITH g AS ({_sums("new_rows", 1)})
            {_UPSERT};
        ELSIF TG_OP = 'DELETE' THEN
            WITH g AS ({_sums("old_rows", -1)})
            {_UPSERT};
        ELSE
            WITH g AS (
                {_sums("old_rows", -1)}
                UNION ALL
                {_sums("new_rows", 1)}
            )
            {_UPSERT};
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER member_figures_spend_inserted AFTER INSERT ON member_figures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION member_figures_spent()
    """,
    """
    CREATE TRIGGER member_figures_spend_updated AFTER UPDATE ON member_figures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION member_figures_spent()
    """,
    """
    CREATE TRIGGER member_figures_spend_deleted AFTER DELETE ON member_figures
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION member_figures_spent()
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("inserted", "updated", "deleted"):
        op.execute(f"DROP TRIGGER IF EXISTS member_figures_spend_{trigger} ON member_figures")
    op.execute("DROP FUNCTION IF EXISTS member_figures_spent()")
    op.execute("DROP TABLE IF EXISTS spend_counts")
    op.execute(
        "ALTER TABLE member_figures DROP COLUMN IF EXISTS spend_units_12m, "
        "DROP COLUMN IF EXISTS unit_spend_12m, DROP COLUMN IF EXISTS bought_units_12m"
    )
