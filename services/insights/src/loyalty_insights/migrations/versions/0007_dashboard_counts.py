"""The dashboards' counts of the members' figures (`figure_counts`), kept by statement triggers
on `member_figures` in the transaction that writes its rows (adapters/tables.py says what).

Revision ID: 0007_dashboard_counts
Revises: 0006
Create Date: 2026-11-30
"""

from alembic import op

revision = "0007_dashboard_counts"
down_revision = "0006"
branch_labels = None
depends_on = None

SLOTS = 16  # counters per key, by member: concurrent recomputes rarely wait for each other

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
    # the keys of the rows inserted less those of the rows deleted; an update counts only the
    # rows whose segment or units changed.
    f"""
    CREATE FUNCTION member_figures_counted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO figure_counts (figure, key, slot, members)
            SELECT k.figure, k.key, hashtext(n.member_id) & {SLOTS - 1}, count(*)
            FROM new_rows n, figure_keys(n.rfm_segment, n.units_12m) k
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (figure, key, slot)
            DO UPDATE SET members = figure_counts.members + excluded.members;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO figure_counts (figure, key, slot, members)
            SELECT k.figure, k.key, hashtext(o.member_id) & {SLOTS - 1}, -count(*)
            FROM old_rows o, figure_keys(o.rfm_segment, o.units_12m) k
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (figure, key, slot)
            DO UPDATE SET members = figure_counts.members + excluded.members;
        ELSE
            INSERT INTO figure_counts (figure, key, slot, members)
            SELECT d.figure, d.key, d.slot, sum(d.delta)
            FROM (
                SELECT o.member_id, o.rfm_segment AS old_segment, o.units_12m AS old_units,
                       n.rfm_segment AS new_segment, n.units_12m AS new_units
                FROM old_rows o JOIN new_rows n ON n.member_id = o.member_id
                WHERE o.rfm_segment IS DISTINCT FROM n.rfm_segment
                   OR o.units_12m IS DISTINCT FROM n.units_12m
            ) c
            CROSS JOIN LATERAL (
                SELECT k.figure, k.key, hashtext(c.member_id) & {SLOTS - 1} AS slot, -1 AS delta
                FROM figure_keys(c.old_segment, c.old_units) k
                UNION ALL
                SELECT k.figure, k.key, hashtext(c.member_id) & {SLOTS - 1}, 1
                FROM figure_keys(c.new_segment, c.new_units) k
            ) d
            GROUP BY 1, 2, 3 HAVING sum(d.delta) <> 0 ORDER BY 1, 2, 3
            ON CONFLICT (figure, key, slot)
            DO UPDATE SET members = figure_counts.members + excluded.members;
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
