"""Catalogue versions, members' tiers, quota usage and consumptions, coupons, reward stock and
redemptions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE catalogue_versions (
        version    bigint PRIMARY KEY,
        document   jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # The tier each member has, as TierChanged events told it.
    """
    CREATE TABLE member_tiers (
        member_id     uuid PRIMARY KEY,
        tier          text NOT NULL,
        effective_at  timestamptz NOT NULL,
        tier_year_end timestamptz
    )
    """,
    # One row per member, benefit and quota period; a consumption increments `used` only while
    # it is below the quota (one conditional upsert), so concurrent consumptions never exceed it.
    """
    CREATE TABLE quota_usage (
        member_id    uuid NOT NULL,
        benefit_code text NOT NULL,
        period_key   text NOT NULL,
        used         integer NOT NULL CHECK (used >= 0),
        PRIMARY KEY (member_id, benefit_code, period_key)
    )
    """,
    """
    CREATE TABLE consumptions (
        member_id         uuid NOT NULL,
        consumption_id    uuid NOT NULL,
        benefit_code      text NOT NULL,
        unit              text NOT NULL,
        order_id          text NOT NULL,
        period_key        text NOT NULL,
        counted           boolean NOT NULL,
        catalogue_version bigint NOT NULL,
        consumed_at       timestamptz NOT NULL,
        released_at       timestamptz,
        release_reason    text NOT NULL DEFAULT '',
        PRIMARY KEY (member_id, consumption_id)
    )
    """,
    """
    CREATE TABLE coupons (
        member_id         uuid NOT NULL,
        code              text NOT NULL UNIQUE,
        template_code     text NOT NULL,
        name_zh           text NOT NULL,
        name_en           text NOT NULL,
        kind              text NOT NULL,
        currency          text NOT NULL DEFAULT '',
        amount            numeric,
        percentage        numeric,
        minimum_spend     numeric,
        unit              text NOT NULL,
        valid_from        timestamptz NOT NULL,
        valid_until       timestamptz NOT NULL,
        source            text NOT NULL,
        grant_key         text,
        issued_at         timestamptz NOT NULL,
        seq               bigserial,
        state             text NOT NULL,
        redeemed_at       timestamptz,
        redeemed_unit     text NOT NULL DEFAULT '',
        redeemed_order_id text NOT NULL DEFAULT '',
        discount          numeric,
        discount_currency text NOT NULL DEFAULT '',
        PRIMARY KEY (member_id, code)
    )
    """,
    "CREATE INDEX coupons_by_member ON coupons (member_id, seq DESC)",
    # A grant (a tier's welcome gift, a reward's coupon) is issued at most once per member.
    "CREATE UNIQUE INDEX coupons_grant ON coupons (member_id, grant_key) "
    "WHERE grant_key IS NOT NULL",
    """
    CREATE TABLE reward_stock (
        reward_code text PRIMARY KEY,
        available   bigint NOT NULL CHECK (available >= 0)
    )
    """,
    """
    CREATE TABLE reward_redemptions (
        redemption_id   uuid PRIMARY KEY,
        scope           text NOT NULL,
        request_id      text NOT NULL,
        fingerprint     text NOT NULL,
        member_id       uuid NOT NULL,
        reward_code     text NOT NULL,
        unit            text NOT NULL,
        points          bigint NOT NULL,
        state           text NOT NULL,
        posting_id      text NOT NULL DEFAULT '',
        coupon_code     text NOT NULL DEFAULT '',
        failure_reason  text NOT NULL DEFAULT '',
        failure_message text NOT NULL DEFAULT '',
        created_at      timestamptz NOT NULL,
        updated_at      timestamptz NOT NULL,
        UNIQUE (scope, request_id)
    )
    """,
    "CREATE INDEX reward_redemptions_open ON reward_redemptions (updated_at) "
    "WHERE state IN ('reserved', 'charged')",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute(
        "DROP TABLE reward_redemptions, reward_stock, coupons, consumptions, quota_usage, "
        "member_tiers, catalogue_versions"
    )
