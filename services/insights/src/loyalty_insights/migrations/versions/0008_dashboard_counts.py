"""The dashboards' counts of the members' figures (`figure_counts`), kept by statement triggers
on `member_figures` in the transaction that writes its rows (adapters/tables.py says what).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SLOTS = 16  # counters per key, by member: concurrent recomputes rarely wait for each other

# The counts `g` (segment, units, slot, n) added to their keys' counters.
_UPSERT = """
            INSERT INTO figure_counts (figure, key, slot, members)
            SELECT k.figure, k.key, g.slot, sum(g.n)
            FROM g, figure_keys(g.segment, g.units) k
            GROUP BY 1, 2, 3 HAVING sum(g.n) <> 0 ORDER BY 1, 2, 3
            ON CONFLICT (figure, key, slot)
            DO UPDATE SET members = figure_counts.members + excluded.members"""

STATEMENTS = (
    """
    CREATE TABLE figure_counts (
        figure  text NOT NULL,
        key     text NOT NULL,
        slot    smallint NOT NULL,
        members bigint NOT NULL,
        PRIMARY KEY (figure, key, slot)
    )
    """,
    # What one row of member_figures counts for: its RFM segment, active (a unit in the
    # trailing 12 months), multi-unit (two or more: group-wide, and at each of its units) and
    # each ordered pair of its units.
    """
    CREATE FUNCTION figure_keys(segment text, units text[])
    RETURNS TABLE (figure text, key text) LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT 'segment', segment WHERE segment IS NOT NULL
        UNION ALL SELECT 'active', '' WHERE cardinality(units) >= 1
        UNION ALL SELECT 'multi', '' WHERE cardinality(units) >= 2
        UNION ALL SELECT 'multi', u FROM unnest(units) u WHERE cardinality(units) >= 2
        UNION ALL SELECT 'pair', a.u || ' ' || b.u FROM unnest(units) a (u), unnest(units) b (u)
    $$
    """,
    # One upsert per statement, in key order (so two writers lock counters in the same order):
    # the keys of the rows inserted less those of the rows deleted; an update adds its new rows'
    # and takes away its old rows', so only the rows whose segment or units changed count. Rows
    # are first counted by (segment, units, slot), a few thousand groups, and only those
    # expanded into their keys. No join of the transition tables: PL/pgSQL keeps the plan
    # made at a session's first call, sized for that call's rows (often one), and a join
    # planned for one row ran as nested loops over thousands (minutes, on every update).
    f"""
    CREATE FUNCTION member_figures_counted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            WITH g AS (
                SELECT rfm_segment AS segment, units_12m AS units,
                       hashtext(member_id) & {SLOTS - 1} AS slot, count(*) AS n
                FROM new_rows GROUP BY 1, 2, 3
            )
            {_UPSERT};
        ELSIF TG_OP = 'DELETE' THEN
            WITH g AS (
                SELECT rfm_segment AS segment, units_12m AS units,
                       hashtext(member_id) & {SLOTS - 1} AS slot, -count(*) AS n
                FROM old_rows GROUP BY 1, 2, 3
            )
            {_UPSERT};
        ELSE  -- the new rows' keys less the old rows': a row whose keys stayed nets to zero
            WITH g AS (
                SELECT segment, units, slot, sum(n) AS n FROM (
                    SELECT rfm_segment AS segment, units_12m AS units,
                           hashtext(member_id) & {SLOTS - 1} AS slot, -count(*) AS n
                    FROM old_rows GROUP BY 1, 2, 3
                    UNION ALL
                    SELECT rfm_segment, units_12m, hashtext(member_id) & {SLOTS - 1}, count(*)
                    FROM new_rows GROUP BY 1, 2, 3
                ) d GROUP BY 1, 2, 3 HAVING sum(n) <> 0
            )
            {_UPSERT};
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER member_figures_inserted AFTER INSERT ON member_figures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION member_figures_counted()
    """,
    """
    CREATE TRIGGER member_figures_updated AFTER UPDATE ON member_figures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION member_figures_counted()
    """,
    """
    CREATE TRIGGER member_figures_deleted AFTER DELETE ON member_figures
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION member_figures_counted()
    """,
    # The rows already there.
    f"""
    INSERT INTO figure_counts (figure, key, slot, members)
    SELECT k.figure, k.key, hashtext(m.member_id) & {SLOTS - 1}, count(*)
    FROM member_figures m, figure_keys(m.rfm_segment, m.units_12m) k
    GROUP BY 1, 2, 3
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("inserted", "updated", "deleted"):
        op.execute(f"DROP TRIGGER IF EXISTS member_figures_{trigger} ON member_figures")
    op.execute("DROP FUNCTION IF EXISTS member_figures_counted(), figure_keys(text, text[])")
    op.execute("DROP TABLE IF EXISTS figure_counts")
