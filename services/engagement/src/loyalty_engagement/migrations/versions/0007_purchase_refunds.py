"""Purchases as challenges and leaderboards keep them, their refunds, the challenge periods
each counted in, and who absorbed members became (adapters/tables.py says why). The progress
counted before is carried over as purchases of its own (`carried:` keys, refunded by nothing):
a purchase goal's progress is recomputed from its purchases, and would otherwise start again
from what came after.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE challenge_purchases (
        purchase_key text PRIMARY KEY,
        member_id    text NOT NULL,
        unit         text NOT NULL,
        spend        text NOT NULL,
        occurred_at  timestamptz NOT NULL
    )
    """,
    "CREATE INDEX challenge_purchases_member ON challenge_purchases (member_id)",
    """
    CREATE TABLE purchase_refunds (
        refund_key   text PRIMARY KEY,
        purchase_key text NOT NULL,
        member_id    text NOT NULL,
        spend        text NOT NULL,
        occurred_at  timestamptz NOT NULL
    )
    """,
    "CREATE INDEX purchase_refunds_purchase ON purchase_refunds (purchase_key)",
    "CREATE INDEX purchase_refunds_member ON purchase_refunds (member_id)",
    """
    CREATE TABLE challenge_contributions (
        challenge_id text NOT NULL,
        purchase_key text NOT NULL,
        member_id    text NOT NULL,
        period       text NOT NULL,
        PRIMARY KEY (challenge_id, purchase_key)
    )
    """,
    "CREATE INDEX challenge_contributions_progress"
    " ON challenge_contributions (challenge_id, member_id, period)",
    "CREATE INDEX challenge_contributions_purchase ON challenge_contributions (purchase_key)",
    "CREATE INDEX challenge_contributions_member ON challenge_contributions (member_id)",
    """
    CREATE TABLE member_merges (
        absorbed_member_id text PRIMARY KEY,
        survivor_member_id text NOT NULL,
        merged_at          timestamptz NOT NULL
    )
    """,
    "CREATE INDEX member_merges_survivor ON member_merges (survivor_member_id)",
    # What each period's progress counted: a purchase per count, the spend as one, a purchase
    # per unit.
    """
    CREATE TEMPORARY TABLE carried ON COMMIT DROP AS
    SELECT p.challenge_id, p.member_id, p.period, p.updated_at,
           'carried:' || p.challenge_id || ':' || p.member_id || ':' || p.period || ':' || n
               AS purchase_key,
           CASE c.goal_kind WHEN 'distinct_units' THEN p.units[n] ELSE '' END AS unit,
           CASE c.goal_kind WHEN 'spend' THEN p.spend ELSE '0' END AS spend
    FROM challenge_progress p JOIN challenges c ON c.challenge_id = p.challenge_id
    CROSS JOIN LATERAL generate_series(1, CASE c.goal_kind
        WHEN 'purchases' THEN p.value
        WHEN 'spend' THEN CASE WHEN p.spend::numeric <> 0 THEN 1 ELSE 0 END
        WHEN 'distinct_units' THEN coalesce(array_length(p.units, 1), 0)
        ELSE 0 END) AS n
    """,
    """
    INSERT INTO challenge_purchases (purchase_key, member_id, unit, spend, occurred_at)
    SELECT purchase_key, member_id, unit, spend, updated_at FROM carried
    """,
    """
    INSERT INTO challenge_contributions (challenge_id, purchase_key, member_id, period)
    SELECT challenge_id, purchase_key, member_id, period FROM carried
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in (
        "member_merges",
        "challenge_contributions",
        "purchase_refunds",
        "challenge_purchases",
    ):
        op.execute(f"DROP TABLE {table}")
