"""Members' activity across the group's units: what counts as activity, and each unit's share
of members' spend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

# Activity kinds. A purchase earns points (its spend counts); a refund takes spend back but is
# no activity of its own; redeeming points, using a benefit or a coupon at a unit, and a past
# order a unit imported as activity are all a visit to that unit.
PURCHASE = "purchase"
REFUND = "refund"
REDEMPTION = "redemption"
CONSUMPTION = "consumption"
COUPON = "coupon"
ORDER = "order"
ACTIVE = (PURCHASE, REDEMPTION, CONSUMPTION, COUPON, ORDER)
SPENDING = (PURCHASE, REFUND, ORDER)


@dataclass(frozen=True)
class MonthOfMembers:
    month: str
    active: int
    multi_unit: int


@dataclass(frozen=True)
class UnitSpend:
    unit: str
    spend: Decimal
    members: int
    share: float


def shares(rows: Sequence[tuple[str, Decimal, int]]) -> tuple[list[UnitSpend], Decimal]:
    """Each unit's spend (unit, spend, members) as its share of the spend at every unit."""
    total = sum((spend for _, spend, _ in rows), Decimal(0))
    return [
        UnitSpend(unit, spend, members, float(spend / total) if total > 0 else 0.0)
        for unit, spend, members in sorted(rows)
    ], total


def shares_at(
    rows: Sequence[tuple[str, Decimal, int]], unit: str
) -> tuple[list[UnitSpend], Decimal]:
    """`shares`, of `unit` alone when one is named: its share still of every unit's spend, the
    total its own spend (not the group's)."""
    units, total = shares(rows)
    if not unit:
        return units, total
    mine = [s for s in units if s.unit == unit]
    return mine, sum((s.spend for s in mine), Decimal(0))
