"""Grants and paid memberships; activity by unit (growth value); the tier members see.

`member_tiers.tier` stays the tier the member's own activity holds (earned); `effective_tier`
is the one announced in TierChanged: the higher of it and any grant in force.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = (
    "ALTER TABLE activity ADD COLUMN unit text NOT NULL DEFAULT ''",
    "ALTER TABLE member_tiers ADD COLUMN effective_tier text",
    "UPDATE member_tiers SET effective_tier = tier",
    "ALTER TABLE member_tiers ALTER COLUMN effective_tier SET NOT NULL",
    "CREATE INDEX member_tiers_due ON member_tiers (tier_year_end) WHERE tier_year_end IS NOT NULL",
    "CREATE INDEX member_tiers_effective ON member_tiers (effective_tier)",
    # One row per grant; a paid membership is one grant that renewals extend.
    """
    CREATE TABLE tier_grants (
        member_id  uuid NOT NULL,
        grant_id   uuid NOT NULL,
        kind       text NOT NULL,
        tier       text NOT NULL,
        reason     text NOT NULL,
        unit       text NOT NULL DEFAULT '',
        starts_at  timestamptz NOT NULL,
        ends_at    timestamptz NOT NULL,
        state      text NOT NULL DEFAULT 'active',
        end_reason text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (member_id, grant_id)
    )
    """,
    "CREATE INDEX tier_grants_due ON tier_grants (ends_at) WHERE state = 'active'",
    # Each order buys one period, once: a replayed purchase or a second member is refused.
    """
    CREATE TABLE membership_orders (
        unit       text NOT NULL,
        order_id   text NOT NULL,
        member_id  uuid NOT NULL,
        grant_id   uuid NOT NULL,
        months     integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (unit, order_id)
    )
    """,
    "CREATE INDEX membership_orders_grant ON membership_orders (member_id, grant_id)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE membership_orders, tier_grants")
    op.execute("DROP INDEX member_tiers_effective, member_tiers_due")
    op.execute("ALTER TABLE member_tiers DROP COLUMN effective_tier")
    op.execute("ALTER TABLE activity DROP COLUMN unit")
