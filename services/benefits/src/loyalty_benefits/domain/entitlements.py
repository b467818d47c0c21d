"""What a member may use: the catalogue's benefits for the member's tier, in force now, at a
unit, each with its quota period. Pure rules, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loyalty_benefits.domain.catalogue import Benefit, Catalogue, Period
from loyalty_benefits.domain.errors import (
    BenefitNotFound,
    BenefitNotInForce,
    BenefitOfAnotherUnit,
    NotEntitled,
)


@dataclass(frozen=True)
class MemberTier:
    """A member's tier as learned from TierChanged events."""

    member_id: str
    tier: str
    effective_at: datetime
    tier_year_end: datetime | None


@dataclass(frozen=True)
class Entitlement:
    benefit: Benefit
    period: Period
    used: int

    @property
    def unlimited(self) -> bool:
        return self.benefit.quota == 0

    @property
    def remaining(self) -> int:
        return 0 if self.unlimited else max(self.benefit.quota - self.used, 0)


def tier_of(catalogue: Catalogue, member: MemberTier | None) -> str:
    """A member the tiers service has not told about yet is on the entry tier."""
    return member.tier if member is not None else catalogue.entry_tier


def usable(catalogue: Catalogue, tier: str, unit: str, now: datetime) -> list[Benefit]:
    """Benefits the tier has now at `unit` (every unit when empty), by code."""
    return sorted(
        (
            b
            for b in catalogue.benefits
            if b.in_force(now) and b.for_tier(tier) and (not unit or b.usable_at(unit))
        ),
        key=lambda b: b.code,
    )


def benefit_to_consume(
    catalogue: Catalogue, code: str, tier: str, unit: str, now: datetime
) -> Benefit:
    """The benefit a unit wants to consume for a member of `tier`, or why it cannot."""
    benefit = catalogue.benefit(code)
    if benefit is None:
        raise BenefitNotFound(code)
    if not benefit.usable_at(unit):
        raise BenefitOfAnotherUnit(code, benefit.unit, unit)
    if not benefit.in_force(now):
        raise BenefitNotInForce(code)
    if not benefit.for_tier(tier):
        raise NotEntitled(code, tier)
    return benefit


@dataclass
class Consumption:
    consumption_id: str
    member_id: str
    benefit_code: str
    unit: str
    order_id: str
    period_key: str
    counted: bool  # False for unlimited benefits: nothing to give back on release
    catalogue_version: int
    consumed_at: datetime
    released_at: datetime | None = None
    release_reason: str = ""
