"""What the benefits service tells the others, as plain domain events: the use cases record
them on the unit of work, which collects them for the outbox; one adapter
(`adapters/events.py`) maps each to the `loyalty.benefits.v1` contract."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from loyalty_kit.money import Amount


@dataclass(frozen=True)
class BenefitConsumed:
    member_id: str
    consumption_id: str
    benefit_code: str
    unit: str
    order_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class BenefitReleased:
    member_id: str
    consumption_id: str
    benefit_code: str
    unit: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class CouponIssued:
    member_id: str
    code: str
    template_code: str
    source: str
    valid_until: datetime
    occurred_at: datetime


@dataclass(frozen=True)
class CouponRedeemed:
    member_id: str
    code: str
    template_code: str
    unit: str
    order_id: str
    discount: Amount
    occurred_at: datetime


@dataclass(frozen=True)
class CouponReleased:
    member_id: str
    code: str
    template_code: str
    unit: str
    order_id: str
    reason: str
    discount: Amount | None  # none when the coupon was not redeemed against an order amount
    occurred_at: datetime


@dataclass(frozen=True)
class RewardRedeemed:
    member_id: str
    redemption_id: str
    reward_code: str
    unit: str
    points: int
    points_posting_id: str
    coupon_code: str
    occurred_at: datetime


@dataclass(frozen=True)
class CouponClaimed:
    member_id: str
    offer_id: str
    code: str
    template_code: str
    issuer_unit: str
    offer_claimed: int
    occurred_at: datetime


Event: TypeAlias = (
    BenefitConsumed
    | BenefitReleased
    | CouponIssued
    | CouponRedeemed
    | CouponReleased
    | RewardRedeemed
    | CouponClaimed
)
