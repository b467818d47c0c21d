"""Coupon offers members claim themselves: the offer and the count of its claims (a claim's
coupon is a grant `offer:{offer_id}:{claim_id}` in `coupons`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE coupon_offers (
            offer_id          uuid PRIMARY KEY,
            template_code     text NOT NULL,
            available         bigint NOT NULL CHECK (available > 0),
            per_member_limit  integer NOT NULL CHECK (per_member_limit > 0),
            claim_start       timestamptz NOT NULL,
            claim_end         timestamptz NOT NULL,
            minimum_tier      text NOT NULL DEFAULT '',
            issuer_unit       text NOT NULL,
            claimed           bigint NOT NULL DEFAULT 0,
            created_at        timestamptz NOT NULL,
            CONSTRAINT coupon_offers_window CHECK (claim_start < claim_end),
            -- The last guard of the offer's rule: never more claims than it holds.
            CONSTRAINT coupon_offers_claimed CHECK (claimed >= 0 AND claimed <= available)
        )
        """
    )
    # ListCouponOffers: newest first.
    op.execute("CREATE INDEX coupon_offers_newest ON coupon_offers (created_at DESC, offer_id)")


def downgrade() -> None:
    op.execute("DROP TABLE coupon_offers")
