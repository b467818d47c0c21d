"""Challenges, their counted events, members' progress and completions, badges and their audit,
leaderboards, members' scores, closed periods and their payouts (adapters/tables.py says why).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE challenges (
        challenge_id text PRIMARY KEY,
        unit         text NOT NULL,
        goal_kind    text NOT NULL,
        spec         jsonb NOT NULL,
        start_at     timestamptz NOT NULL,
        end_at       timestamptz,
        created_at   timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE counted_events (
        counter    text NOT NULL,
        event_key  text NOT NULL,
        counted_at timestamptz NOT NULL,
        PRIMARY KEY (counter, event_key)
    )
    """,
    """
    CREATE TABLE challenge_progress (
        challenge_id text NOT NULL,
        member_id    text NOT NULL,
        period       text NOT NULL,
        value        bigint NOT NULL,
        spend        text NOT NULL,
        units        text[] NOT NULL,
        last_day     date,
        updated_at   timestamptz NOT NULL,
        PRIMARY KEY (challenge_id, member_id, period)
    )
    """,
    "CREATE INDEX challenge_progress_member ON challenge_progress (member_id)",
    """
    CREATE TABLE challenge_completions (
        challenge_id   text NOT NULL,
        member_id      text NOT NULL,
        completion_key text NOT NULL,
        period         text NOT NULL,
        completed_at   timestamptz NOT NULL,
        rewards        text NOT NULL,
        PRIMARY KEY (challenge_id, member_id, completion_key)
    )
    """,
    """
    CREATE TABLE member_badges (
        member_id text NOT NULL,
        badge     text NOT NULL,
        source    text NOT NULL,
        earned_at timestamptz NOT NULL,
        PRIMARY KEY (member_id, badge)
    )
    """,
    """
    CREATE TABLE badge_audit (
        seq       bigserial PRIMARY KEY,
        member_id text NOT NULL,
        badge     text NOT NULL,
        action    text NOT NULL,
        unit      text NOT NULL,
        client_id text NOT NULL,
        reason    text NOT NULL,
        at        timestamptz NOT NULL
    )
    """,
    "CREATE INDEX badge_audit_member ON badge_audit (member_id, seq)",
    """
    CREATE TABLE leaderboards (
        leaderboard_id text PRIMARY KEY,
        unit           text NOT NULL,
        spec           jsonb NOT NULL,
        created_at     timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE leaderboard_scores (
        metric    text NOT NULL,
        scope     text NOT NULL,
        period    text NOT NULL,
        member_id text NOT NULL,
        score     bigint NOT NULL,
        PRIMARY KEY (metric, scope, period, member_id)
    )
    """,
    """
    CREATE INDEX leaderboard_scores_ranked
        ON leaderboard_scores (metric, scope, period, score DESC)
    """,
    """
    CREATE TABLE leaderboard_closes (
        leaderboard_id text NOT NULL,
        period         text NOT NULL,
        closed_at      timestamptz NOT NULL,
        PRIMARY KEY (leaderboard_id, period)
    )
    """,
    """
    CREATE TABLE leaderboard_payouts (
        leaderboard_id text NOT NULL,
        period         text NOT NULL,
        member_id      text NOT NULL,
        reward         integer NOT NULL,
        rank           bigint NOT NULL,
        score          bigint NOT NULL,
        paid_at        timestamptz,
        PRIMARY KEY (leaderboard_id, period, member_id, reward)
    )
    """,
    """
    CREATE INDEX leaderboard_payouts_unpaid ON leaderboard_payouts (leaderboard_id, period)
        WHERE paid_at IS NULL
    """,
)

TABLES = (
    "leaderboard_payouts",
    "leaderboard_closes",
    "leaderboard_scores",
    "leaderboards",
    "badge_audit",
    "member_badges",
    "challenge_completions",
    "challenge_progress",
    "counted_events",
    "challenges",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE {table}")
