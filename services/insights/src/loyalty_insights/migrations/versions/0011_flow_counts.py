"""Members' first unit and next unit (three columns of `member_figures`) and the flows of the
standard window (`flow_counts`), kept by statement triggers on `member_figures` in the
transaction that writes its rows (adapters/tables.py says what). Rows written before this
migration count in no flow until the next full refresh rewrites them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SLOTS = 16  # counters per flow, by member: concurrent recomputes rarely wait for each other


def _counts(rows: str, factor: int) -> str:
    return f"""
            SELECT r.first_unit AS from_unit, r.next_unit AS to_unit,
                   hashtext(r.member_id) & {SLOTS - 1} AS slot, {factor} * count(*) AS n
            FROM {rows} r WHERE r.new_12m
            GROUP BY 1, 2, 3"""


# The counts `g` (from_unit, to_unit, slot, n) added to their counters, in key order.
_UPSERT = """
            INSERT INTO flow_counts (from_unit, to_unit, slot, members)
            SELECT from_unit, to_unit, slot, sum(n) FROM g
            GROUP BY 1, 2, 3 HAVING sum(n) <> 0 ORDER BY 1, 2, 3
            ON CONFLICT (from_unit, to_unit, slot)
            DO UPDATE SET members = flow_counts.members + excluded.members"""

STATEMENTS = (
    """
    ALTER TABLE member_figures
        ADD COLUMN first_unit text,
        ADD COLUMN next_unit text NOT NULL DEFAULT '',
        ADD COLUMN new_12m boolean NOT NULL DEFAULT false
    """,
    """
    CREATE TABLE flow_counts (
        from_unit text NOT NULL,
        to_unit   text NOT NULL,
        slot      smallint NOT NULL,
        members   bigint NOT NULL,
        PRIMARY KEY (from_unit, to_unit, slot)
    )
    """,
    # The flows of the rows inserted less those of the rows deleted; an update adds its new
    # rows' and takes away its old rows' (no join of the transition tables: 0008_dashboard_counts
    # says why).
    f"""
    CREATE FUNCTION member_figures_flowed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            WITH g AS ({_counts("new_rows", 1)})
            {_UPSERT};
        ELSIF TG_OP = 'DELETE' THEN
            WITH g AS ({_counts("old_rows", -1)})
            {_UPSERT};
        ELSE
            WITH g AS (
                {_counts("old_rows", -1)}
                UNION ALL
                {_counts("new_rows", 1)}
            )
            {_UPSERT};
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER member_figures_flow_inserted AFTER INSERT ON member_figures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION member_figures_flowed()
    """,
    """
    CREATE TRIGGER member_figures_flow_updated AFTER UPDATE ON member_figures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION member_figures_flowed()
    """,
    """
    CREATE TRIGGER member_figures_flow_deleted AFTER DELETE ON member_figures
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION member_figures_flowed()
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("inserted", "updated", "deleted"):
        op.execute(f"DROP TRIGGER IF EXISTS member_figures_flow_{trigger} ON member_figures")
    op.execute("DROP FUNCTION IF EXISTS member_figures_flowed()")
    op.execute("DROP TABLE IF EXISTS flow_counts")
    op.execute(
        "ALTER TABLE member_figures DROP COLUMN IF EXISTS first_unit, "
        "DROP COLUMN IF EXISTS next_unit, DROP COLUMN IF EXISTS new_12m"
    )
