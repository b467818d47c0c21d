"""The cohorts' and programme health's months: per-member rows (`member_months`,
`member_joins`) and the counts by month (`month_counts`, `cohort_counts`) that the consumers keep
in the transaction of every event that touches members (adapters/month_counts.py), filled here
from the facts already recorded (the same statements as `MonthCounts.rebuild`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = (
    """
    CREATE TABLE member_months (
        member_id text NOT NULL,
        month     text NOT NULL,
        unit      text NOT NULL,
        redeemed  boolean NOT NULL,
        PRIMARY KEY (member_id, month, unit)
    )
    """,
    """
    CREATE TABLE member_joins (
        member_id text NOT NULL,
        unit      text NOT NULL,
        month     text NOT NULL,
        imported  boolean NOT NULL,
        first     boolean NOT NULL,
        PRIMARY KEY (member_id, unit)
    )
    """,
    """
    CREATE TABLE month_counts (
        month        text NOT NULL,
        unit         text NOT NULL,
        slot         smallint NOT NULL,
        active       bigint NOT NULL,
        redeeming    bigint NOT NULL,
        unregistered bigint NOT NULL,
        registered   bigint NOT NULL,
        joined       bigint NOT NULL,
        imported     bigint NOT NULL,
        PRIMARY KEY (month, unit, slot)
    )
    """,
    """
    CREATE TABLE cohort_counts (
        cohort text NOT NULL,
        month  text NOT NULL,
        unit   text NOT NULL,
        slot   smallint NOT NULL,
        active bigint NOT NULL,
        PRIMARY KEY (cohort, month, unit, slot)
    )
    """,
)

# Every member's rows and counters from the facts so far: $ACTIVE the kinds of activity,
# $REDEEMING those that redeem (domain/crossunit.py `ACTIVE`, domain/cohorts.py `REDEEMING`).
ACTIVE = "ARRAY['purchase', 'redemption', 'consumption', 'coupon', 'order']"
REDEEMING = "ARRAY['redemption', 'consumption', 'coupon']"
BACKFILL = (
    """
CREATE TEMPORARY TABLE staged_months ON COMMIT DROP AS
WITH RECURSIVE chain (member_id, owner) AS (
    SELECT absorbed_id, survivor_id FROM member_merges
    UNION
    SELECT c.member_id, m.survivor_id
    FROM chain c JOIN member_merges m ON m.absorbed_id = c.owner
), owners AS (
    SELECT c.member_id, c.owner FROM chain c
    WHERE NOT EXISTS (SELECT 1 FROM member_merges m WHERE m.absorbed_id = c.owner)
), fam AS (
    SELECT x.member_id, coalesce(o.owner, x.member_id) AS owner
    FROM (SELECT member_id FROM registrations UNION SELECT member_id FROM activity) AS x
    LEFT JOIN owners o ON o.member_id = x.member_id
), acts AS (
    SELECT f.owner, to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, a.unit,
           bool_or(a.kind = ANY($REDEEMING)) AS redeemed
    FROM activity a JOIN fam f ON f.member_id = a.member_id
    WHERE a.kind = ANY($ACTIVE)
    GROUP BY 1, 2, 3
)
SELECT owner AS member_id, month, unit, redeemed FROM acts
UNION ALL
SELECT owner, month, '', bool_or(redeemed) FROM acts GROUP BY 1, 2
""",
    """
CREATE TEMPORARY TABLE staged_joins ON COMMIT DROP AS
WITH RECURSIVE chain (member_id, owner) AS (
    SELECT absorbed_id, survivor_id FROM member_merges
    UNION
    SELECT c.member_id, m.survivor_id
    FROM chain c JOIN member_merges m ON m.absorbed_id = c.owner
), owners AS (
    SELECT c.member_id, c.owner FROM chain c
    WHERE NOT EXISTS (SELECT 1 FROM member_merges m WHERE m.absorbed_id = c.owner)
), fam AS (
    SELECT x.member_id, coalesce(o.owner, x.member_id) AS owner
    FROM (SELECT member_id FROM registrations UNION SELECT member_id FROM activity) AS x
    LEFT JOIN owners o ON o.member_id = x.member_id
), regs AS (
    SELECT DISTINCT ON (f.owner, r.unit) f.owner, r.unit, r.registered_at, r.imported
    FROM registrations r JOIN fam f ON f.member_id = r.member_id
    ORDER BY f.owner, r.unit, r.registered_at, r.imported DESC
), firsts AS (
    SELECT DISTINCT ON (owner) owner, unit, registered_at, imported
    FROM regs ORDER BY owner, registered_at, unit
)
SELECT r.owner AS member_id, r.unit,
       to_char(r.registered_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, r.imported,
       r.unit = f.unit AS first
FROM regs r JOIN firsts f ON f.owner = r.owner
UNION ALL
SELECT owner, '', to_char(registered_at AT TIME ZONE 'UTC', 'YYYY-MM'), imported, true
FROM firsts
""",
    """
INSERT INTO month_counts
    (month, unit, slot, active, redeeming, unregistered, registered, joined, imported)
SELECT month, unit, slot, sum(active), sum(redeeming), sum(unregistered), sum(registered),
       sum(joined), sum(imported)
FROM (
    SELECT m.month, m.unit, hashtext(m.member_id) & 15 AS slot, 1 AS active,
           m.redeemed::int AS redeeming,
           (j.month IS NULL OR j.month > m.month)::int AS unregistered,
           0 AS registered, 0 AS joined, 0 AS imported
    FROM staged_months m
    LEFT JOIN staged_joins j ON j.member_id = m.member_id AND j.unit = m.unit
    UNION ALL
    SELECT month, unit, hashtext(member_id) & 15, 0, 0, 0, 1, first::int,
           (first AND imported)::int
    FROM staged_joins
) AS c
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
""",
    """
INSERT INTO cohort_counts (cohort, month, unit, slot, active)
SELECT j.month, m.month, m.unit, hashtext(m.member_id) & 15, count(*)
FROM staged_months m
JOIN staged_joins j ON j.member_id = m.member_id AND j.unit = m.unit AND j.first
WHERE m.month >= j.month
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
""",
    """
INSERT INTO member_months (member_id, month, unit, redeemed)
SELECT * FROM staged_months s
WHERE NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = s.member_id)
""",
    """
INSERT INTO member_joins (member_id, unit, month, imported, first)
SELECT * FROM staged_joins s
WHERE NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = s.member_id)
""",
)


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)
    for statement in BACKFILL:
        op.execute(statement.replace("$ACTIVE", ACTIVE).replace("$REDEEMING", REDEEMING))


def downgrade() -> None:
    for table in ("cohort_counts", "month_counts", "member_joins", "member_months"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
