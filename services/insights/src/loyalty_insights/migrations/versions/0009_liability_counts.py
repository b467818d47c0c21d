"""The points liability's stored sums (`liability_counts`), kept by statement triggers on
`ledger_postings` and `lot_movements` in the transaction that writes the facts
(adapters/tables.py says what).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SLOTS = 16  # sums per key, by member: concurrent batches rarely wait for each other

# What a posting counts for: its unit, kind and sign (the settlement's grouping).
_POSTINGS = f"""
    SELECT 'posting' AS source, unit, kind, sign(points)::smallint AS sign, '' AS month,
           hashtext(member_id) & {SLOTS - 1} AS slot, sum(points) AS points
    FROM {{rows}} GROUP BY 1, 2, 3, 4, 5, 6"""

# What a lot movement counts for: the lot's issuing unit, the movement's kind and the month the
# lot expires in ('' never).
_MOVEMENTS = f"""
    SELECT 'lot' AS source, earned_unit AS unit, kind, 0::smallint AS sign,
           coalesce(to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') AS month,
           hashtext(member_id) & {SLOTS - 1} AS slot, sum(points) AS points
    FROM {{rows}} GROUP BY 1, 2, 3, 4, 5, 6"""

# The sums `g` added to their keys, in key order (two writers lock them in the same order).
_UPSERT = """
    INSERT INTO liability_counts (source, unit, kind, sign, month, slot, points)
    SELECT source, unit, kind, sign, month, slot, {factor} * points FROM ({select}) g
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (source, unit, kind, sign, month, slot)
    DO UPDATE SET points = liability_counts.points + excluded.points"""


def _function(name: str, select: str) -> str:
    return f"""
    CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {_UPSERT.format(factor=1, select=select.format(rows="new_rows"))};
        ELSE
            {_UPSERT.format(factor=-1, select=select.format(rows="old_rows"))};
        END IF;
        RETURN NULL;
    END
    $$
    """


def _triggers(table: str, function: str) -> tuple[str, str]:
    return (
        f"""
        CREATE TRIGGER {table}_summed AFTER INSERT ON {table}
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION {function}()
        """,
        f"""
        CREATE TRIGGER {table}_unsummed AFTER DELETE ON {table}
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION {function}()
        """,
    )


STATEMENTS = (
    """
    CREATE TABLE liability_counts (
        source text NOT NULL,
        unit   text NOT NULL,
        kind   text NOT NULL,
        sign   smallint NOT NULL,
        month  text NOT NULL,
        slot   smallint NOT NULL,
        points bigint NOT NULL,
        PRIMARY KEY (source, unit, kind, sign, month, slot)
    )
    """,
    _function("ledger_postings_summed", _POSTINGS),
    _function("lot_movements_summed", _MOVEMENTS),
    *_triggers("ledger_postings", "ledger_postings_summed"),
    *_triggers("lot_movements", "lot_movements_summed"),
    # A truncated fact table (a reload) takes its sums along: TRUNCATE fires no DELETE trigger.
    """
    CREATE FUNCTION ledger_facts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM liability_counts WHERE source = TG_ARGV[0];
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER ledger_postings_truncated AFTER TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_facts_truncated('posting')
    """,
    """
    CREATE TRIGGER lot_movements_truncated AFTER TRUNCATE ON lot_movements
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_facts_truncated('lot')
    """,
    # The facts already there.
    "INSERT INTO liability_counts " + _POSTINGS.format(rows="ledger_postings"),
    "INSERT INTO liability_counts " + _MOVEMENTS.format(rows="lot_movements"),
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in ("ledger_postings", "lot_movements"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_summed ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_unsummed ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_truncated ON {table}")
    op.execute(
        "DROP FUNCTION IF EXISTS ledger_postings_summed(), lot_movements_summed(), "
        "ledger_facts_truncated()"
    )
    op.execute("DROP TABLE IF EXISTS liability_counts")
