"""Registration cohorts and the programme's health: who joined when and stayed active, and
month by month how many members are active, redeem, sit in each tier and use benefits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loyalty_insights.domain.crossunit import CONSUMPTION, COUPON, REDEMPTION

# What counts as redeeming: points redeemed, a benefit or a coupon used.
REDEEMING = (REDEMPTION, CONSUMPTION, COUPON)


def rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def month_index(month: str) -> int:
    """ "2026-11" as a count of months, to subtract one month from another."""
    year, number = month.split("-")
    return int(year) * 12 + int(number) - 1


@dataclass(frozen=True)
class CohortMonth:
    month: str
    offset: int
    active: int
    retention: float


@dataclass(frozen=True)
class Cohort:
    month: str
    members: int
    imported: int
    months: list[CohortMonth]


def cohorts(
    months: Sequence[str],
    sizes: Sequence[tuple[str, int, int]],
    active: Mapping[tuple[str, str], int],
) -> list[Cohort]:
    """The cohorts of `sizes` (month, members, imported members), each with its activity in its
    own month and every later month of the period (`active`: (cohort, month) -> members)."""
    found = []
    for month, members, imported in sorted(sizes):
        later = [m for m in months if m >= month]
        found.append(
            Cohort(
                month,
                members,
                imported,
                [
                    CohortMonth(
                        m,
                        month_index(m) - month_index(month),
                        active.get((month, m), 0),
                        rate(active.get((month, m), 0), members),
                    )
                    for m in later
                ],
            )
        )
    return found


@dataclass(frozen=True)
class MonthActivity:
    """One month's members: registered by its end, active in it (of whom not registered by its
    end, and redeeming)."""

    month: str
    registered: int
    active: int
    unregistered_active: int
    redeeming: int


@dataclass(frozen=True)
class TierBenefits:
    tier: str
    uses: int
    members: int


@dataclass(frozen=True)
class HealthMonth:
    month: str
    members: int
    active: int
    active_rate: float
    redeeming: int
    redemption_rate: float
    tiers: list[tuple[str, int]]
    benefits: list[TierBenefits]


def health(
    months: Sequence[str],
    activity: Mapping[str, MonthActivity],
    tiers: Mapping[str, Sequence[tuple[str, int]]],
    benefits: Mapping[str, Sequence[TierBenefits]],
) -> list[HealthMonth]:
    """Every month of the period, zeros where nothing was found."""
    found = []
    for month in months:
        a = activity.get(month, MonthActivity(month, 0, 0, 0, 0))
        members = a.registered + a.unregistered_active
        found.append(
            HealthMonth(
                month,
                members,
                a.active,
                rate(a.active, members),
                a.redeeming,
                rate(a.redeeming, a.active),
                sorted(tiers.get(month, [])),
                sorted(benefits.get(month, []), key=lambda b: b.tier),
            )
        )
    return found
