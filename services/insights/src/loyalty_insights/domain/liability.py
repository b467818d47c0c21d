"""The points liability (积分负债) from the ledger's facts: per issuing unit, what the
settlement counts for a period (points issued, redeemed, expired, forfeited) and what is still
outstanding at its end, by the month it expires in.

The rules are the points service's settlement's, so the two agree to the point: a posting
counts as issued or redeemed by its kind and sign, at its own unit; expiry and erasure forfeits
count by lot, at the unit that issued the lot's points; outstanding points are the sum of every
lot movement up to the end, by the lot's issuing unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

ISSUING = frozenset(
    {"earn", "reverse", "adjust", "partner_exchange_in", "referral_bonus", "migration", "activity"}
)
REDEEMING = frozenset({"redeem", "redemption_cancel", "partner_exchange_out"})
PARTNER_EXCHANGE_REVERSE = "partner_exchange_reverse"
EXPIRE = "expire"
ERASURE_FORFEIT = "erasure_forfeit"
LAPSING = (EXPIRE, ERASURE_FORFEIT)
GROUP = "group"  # the unit of postings that belong to no unit (expiry, merges, erasure)
NEVER = ""  # the expiry month of points that never expire


@dataclass
class UnitLiability:
    unit: str
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    forfeited: int = 0
    # Outstanding points by the month they expire in ("2027-03"; NEVER: they do not).
    expiring: dict[str, int] = field(default_factory=dict)

    @property
    def outstanding(self) -> int:
        return sum(self.expiring.values())

    @property
    def breakage(self) -> float:
        """Expired / issued in the period (0 when nothing was issued)."""
        return self.expired / self.issued if self.issued > 0 else 0.0

    def months(self) -> list[tuple[str, int]]:
        """The outstanding points by expiry month, soonest first, never last; no empty months."""
        found = [(m, p) for m, p in self.expiring.items() if p]
        return sorted(found, key=lambda item: (item[0] == NEVER, item[0]))

    def is_empty(self) -> bool:
        return not (
            self.issued or self.redeemed or self.expired or self.forfeited or self.outstanding
        )

    def add(self, other: UnitLiability) -> None:
        self.issued += other.issued
        self.redeemed += other.redeemed
        self.expired += other.expired
        self.forfeited += other.forfeited
        for month, points in other.expiring.items():
            self.expiring[month] = self.expiring.get(month, 0) + points


def liabilities(
    postings: Iterable[tuple[str, str, int]],
    lapsed: Iterable[tuple[str, str, int]],
    outstanding: Iterable[tuple[str, str, int]],
) -> dict[str, UnitLiability]:
    """Per unit: `postings` are the period's (unit, kind, points summed by sign), `lapsed` its
    lot movements of expiry and erasure (issuing unit, kind, points), `outstanding` every lot
    movement up to its end (issuing unit, expiry month, points)."""
    units: dict[str, UnitLiability] = {}

    def of(unit: str) -> UnitLiability:
        return units.setdefault(unit, UnitLiability(unit))

    for unit, kind, points in postings:
        if kind in ISSUING or (kind == PARTNER_EXCHANGE_REVERSE and points < 0):
            of(unit).issued += points
        elif kind in REDEEMING or kind == PARTNER_EXCHANGE_REVERSE:
            of(unit).redeemed -= points
        else:
            of(unit)  # the settlement lists a unit with postings of any kind
    for unit, kind, points in lapsed:
        if kind == EXPIRE:
            of(unit).expired -= points
        elif kind == ERASURE_FORFEIT:
            of(unit).forfeited -= points
    for unit, month, points in outstanding:
        if points:
            found = of(unit)
            found.expiring[month] = found.expiring.get(month, 0) + points
    if GROUP in units and units[GROUP].is_empty():
        del units[GROUP]  # expiry and forfeits count at the units that issued the points
    return units


def total_of(units: Iterable[UnitLiability]) -> UnitLiability:
    together = UnitLiability("")
    for unit in units:
        together.add(unit)
    return together
