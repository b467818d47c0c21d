"""Business counters, read off the domain events a service commits to its outbox.

One table says which events move which counter, by how much and with which labels. Labels are
what the programme names (a business unit, a tier, a benefit, coupon template or reward code),
never a member, an order or a coupon's own code: a counter's series stay few and identify no one.
Points expire from the group's one balance, not a unit's: their `unit` is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loyalty.benefits.v1 import events_pb2 as benefits
from loyalty.identity.v1 import events_pb2 as identity
from loyalty.points.v1 import events_pb2 as points
from loyalty.tiers.v1 import events_pb2 as tiers

POINTS = "loyalty_points"
TIER_CHANGES = "loyalty_tier_changes"
MEMBERS_REGISTERED = "loyalty_members_registered"
BENEFITS_CONSUMED = "loyalty_benefits_consumed"
COUPONS_ISSUED = "loyalty_coupons_issued"
COUPONS_REDEEMED = "loyalty_coupons_redeemed"
REWARDS_REDEEMED = "loyalty_rewards_redeemed"


def business_counts() -> dict[str, tuple[str, list[str]]]:
    """Each counter: its help text and label names (exported with the suffix `_total`)."""
    return {
        POINTS: (
            "Points moved, by movement (earned, redeemed, expired, reversed, "
            "redemption_cancelled, migrated) and business unit.",
            ["movement", "unit"],
        ),
        TIER_CHANGES: (
            "Members' tier changes, by the tier left and the tier reached.",
            ["from_tier", "to_tier"],
        ),
        MEMBERS_REGISTERED: ("Members registered, by the unit that registered them.", ["unit"]),
        BENEFITS_CONSUMED: ("Tier benefits consumed, by benefit and unit.", ["benefit", "unit"]),
        COUPONS_ISSUED: ("Coupons issued, by coupon template.", ["template"]),
        COUPONS_REDEEMED: ("Coupons redeemed, by coupon template and unit.", ["template", "unit"]),
        REWARDS_REDEEMED: ("Rewards redeemed for points, by reward and unit.", ["reward", "unit"]),
    }


@dataclass(frozen=True)
class Counted:
    """How one event type moves one counter."""

    metric: str
    labels: Callable[[Any], tuple[str, ...]]
    amount: Callable[[Any], float] = lambda _event: 1


def _points(movement: str, unit: Callable[[Any], str] = lambda e: e.unit) -> Counted:
    return Counted(POINTS, lambda e: (movement, unit(e)), lambda e: e.points)


COUNTED: dict[str, tuple[Counted, ...]] = {
    type_.DESCRIPTOR.full_name: rules
    for type_, rules in (
        (points.PointsEarned, (_points("earned"),)),
        (points.PointsRedeemed, (_points("redeemed"),)),
        (points.PointsExpired, (_points("expired", lambda _e: ""),)),
        (points.PointsReversed, (_points("reversed"),)),
        (points.RedemptionCancelled, (_points("redemption_cancelled", lambda _e: ""),)),
        # Behaviour points, by the unit funding them (an activity over its limit adds 0).
        (points.ActivityRecorded, (_points("activity", lambda e: e.funding_unit),)),
        # Legacy balances carried over at an import, by the unit funding them (one event a chunk).
        (
            points.PointsMigrated,
            (
                Counted(
                    POINTS,
                    lambda e: ("migrated", e.unit),
                    lambda e: sum(b.points for b in e.balances),
                ),
            ),
        ),
        (tiers.TierChanged, (Counted(TIER_CHANGES, lambda e: (e.from_tier, e.to_tier)),)),
        (identity.MemberRegistered, (Counted(MEMBERS_REGISTERED, lambda e: (e.unit,)),)),
        (
            benefits.BenefitConsumed,
            (Counted(BENEFITS_CONSUMED, lambda e: (e.benefit_code, e.unit)),),
        ),
        (benefits.CouponIssued, (Counted(COUPONS_ISSUED, lambda e: (e.template_code,)),)),
        (
            benefits.CouponRedeemed,
            (Counted(COUPONS_REDEEMED, lambda e: (e.template_code, e.unit)),),
        ),
        (benefits.RewardRedeemed, (Counted(REWARDS_REDEEMED, lambda e: (e.reward_code, e.unit)),)),
    )
}
