"""The programme rules (data, versioned) and how an earn is computed from them.

The worked example: a gold member spends CNY 1,234.56 at the hotel:
1,234.56 x 1 (base) x 2 (hotel) x 1.25 (gold) = 3,086.4 -> 3,086 points: fractions are rounded
down once, after all multipliers.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loyalty_kit.errors import Violations

from loyalty_points.domain.activities import (
    ActivityRule,
    check_rules,
    rules_from_json,
    rules_to_json,
)
from loyalty_points.domain.money import Amount

MAX_LINES = 200
# Engagement's badge codes (as its challenges define them).
BADGE_CODE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class CurrencyRule:
    code: str
    base_rate: Decimal
    point_value: Decimal
    base_currency_rate: Decimal


@dataclass(frozen=True)
class UnitRule:
    unit: str
    multiplier: Decimal
    pending_days: int = 0
    # The unit's legacy points per group point, for its imported members' balances (None: not
    # set, which converts 1:1; kept apart from an explicit "1" so the programme reads back as
    # it was written).
    legacy_points_per_point: Decimal | None = None

    @property
    def legacy_rate(self) -> Decimal:
        return self.legacy_points_per_point or Decimal(1)


@dataclass(frozen=True)
class Campaign:
    code: str
    name: str
    start: datetime
    end: datetime
    units: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    multiplier: Decimal | None = None
    bonus_points: int = 0
    exclusive: bool = False
    priority: int = 0
    # Engagement's badge codes: only for members holding any of them (empty: all members).
    badges: tuple[str, ...] = ()

    def applies(
        self, unit: str, tier: str, at: datetime, badges: AbstractSet[str] = frozenset()
    ) -> bool:
        """Whether it applies to a purchase at `unit` at `at` by a member holding `tier` and
        `badges` then."""
        return (
            self.start <= at < self.end
            and (not self.units or unit in self.units)
            and (not self.tiers or tier in self.tiers)
            and (not self.badges or not badges.isdisjoint(self.badges))
        )


@dataclass(frozen=True)
class Holding:
    """A badge a member held from `held_from` until `held_until` (None: holds it still)."""

    badge: str
    held_from: datetime
    held_until: datetime | None = None

    def held_at(self, at: datetime) -> bool:
        return self.held_from <= at and (self.held_until is None or at < self.held_until)


def badges_held(holdings: Sequence[Holding], at: datetime) -> frozenset[str]:
    """The badges held at `at` (what a campaign for a badge's holders follows)."""
    return frozenset(h.badge for h in holdings if h.held_at(at))


@dataclass(frozen=True)
class PartnerRule:
    partner: str
    points_per_unit_out: int
    points_per_unit_in: int = 0
    min_points: int = 0
    max_points_per_day: int = 0


@dataclass
class Programme:
    version: int
    effective_from: datetime
    currencies: dict[str, CurrencyRule]
    units: dict[str, UnitRule]
    tiers: dict[str, Decimal] = field(default_factory=dict)
    expiry_months: int = 0
    campaigns: list[Campaign] = field(default_factory=list)
    time_zone: str = "Asia/Shanghai"
    base_currency: str = "CNY"
    transfer_max_per_transfer: int = 0
    transfer_max_per_day: int = 0
    partners: dict[str, PartnerRule] = field(default_factory=dict)
    referrer_points: int = 0
    referee_points: int = 0
    activities: list[ActivityRule] = field(default_factory=list)

    # --- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        problems = Violations()
        if not self.currencies:
            problems.add("programme.currencies", "at least one currency")
        if not self.units:
            problems.add("programme.units", "at least one unit")
        if self.base_currency not in self.currencies:
            problems.add(
                "programme.base_currency_code", "must be one of the programme's currencies"
            )
        elif self.currencies[self.base_currency].base_currency_rate != 1:
            problems.add("programme.currencies", "the base currency's base_currency_rate must be 1")
        if not 0 <= self.expiry_months <= 600:
            problems.add("programme.expiry.months_after_earning", "0 (never) to 600")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.add("programme.time_zone", "an IANA time zone such as Asia/Shanghai")
        for index, unit in enumerate(self.units.values()):
            if not 0 <= unit.pending_days <= 366:
                problems.add(f"programme.units[{index}].pending_days", "0 to 366")
            rate = unit.legacy_points_per_point
            if rate is not None and not (rate.is_finite() and rate > 0):
                problems.add(
                    f"programme.units[{index}].legacy_points_per_point", "a positive decimal"
                )
        if self.transfer_max_per_transfer < 0 or self.transfer_max_per_day < 0:
            problems.add("programme.transfer", "limits must not be negative")
        for index, partner in enumerate(self.partners.values()):
            where = f"programme.partners[{index}]"
            if not partner.partner:
                problems.add(f"{where}.partner", "required")
            if partner.points_per_unit_out <= 0:
                problems.add(f"{where}.points_per_partner_unit", "must be positive")
            if min(partner.points_per_unit_in, partner.min_points, partner.max_points_per_day) < 0:
                problems.add(where, "rates and limits must not be negative")
        if self.referrer_points < 0 or self.referee_points < 0:
            problems.add("programme.referral", "bonuses must not be negative")
        codes: set[str] = set()
        for index, campaign in enumerate(self.campaigns):
            where = f"programme.campaigns[{index}]"
            if not campaign.code or campaign.code in codes:
                problems.add(f"{where}.code", "required and unique")
            codes.add(campaign.code)
            if campaign.end <= campaign.start:
                problems.add(f"{where}.end_time", "must be after start_time")
            if campaign.multiplier is None and campaign.bonus_points <= 0:
                problems.add(f"{where}.effect", "a multiplier or positive bonus_points")
            unknown = [u for u in campaign.units if u not in self.units]
            if unknown:
                problems.add(f"{where}.units", f"unknown units: {', '.join(unknown)}")
            for i, badge in enumerate(campaign.badges):
                if not BADGE_CODE.fullmatch(badge):
                    problems.add(f"{where}.badges[{i}]", "a badge code, 1-64 chars")
        problems.items.extend(check_rules(self.activities, self.units, "group").items)
        problems.raise_if_any()

    # --- computing ------------------------------------------------------------------------------
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def expiry_of(self, earned_at: datetime) -> datetime | None:
        """The end of the Nth month after the month of earning, in the programme's zone."""
        if self.expiry_months == 0:
            return None
        local = earned_at.astimezone(self.zone())
        month_index = local.year * 12 + (local.month - 1) + self.expiry_months + 1
        year, month = divmod(month_index, 12)
        return datetime(year, month + 1, 1, tzinfo=self.zone())

    def available_at(self, unit: str, occurred_at: datetime) -> datetime | None:
        days = self.units[unit].pending_days
        return occurred_at + timedelta(days=days) if days else None

    def start_of_day(self, at: datetime) -> datetime:
        local = at.astimezone(self.zone())
        return local.replace(hour=0, minute=0, second=0, microsecond=0)

    def value_of(self, points: int, currency: str) -> Decimal:
        return Decimal(points) * self.currencies[currency].point_value

    def to_base(self, amount: Amount) -> Decimal:
        return amount.value * self.currencies[amount.currency].base_currency_rate


@dataclass(frozen=True)
class Line:
    line_id: str
    amount: Amount


@dataclass(frozen=True)
class Factor:
    source: str
    multiplier: Decimal


@dataclass(frozen=True)
class Earned:
    """The result of the rules applied to an order."""

    spend: Amount
    base_rate: Decimal
    factors: tuple[Factor, ...]
    bonuses: tuple[tuple[str, int], ...]
    exact: Decimal
    line_points: dict[str, int]
    points: int
    programme_version: int
    # The spend in the programme's base currency: what tiers counts, computed here only.
    base_spend: Amount | None = None

    def as_json(self) -> dict[str, Any]:
        """The breakdown as the earn posting keeps it."""
        base = self.base_spend or self.spend
        return {
            "spend": {"currency": self.spend.currency, "amount": str(self.spend.value)},
            "base_spend": {"currency": base.currency, "amount": str(base.value)},
            "base_rate": str(self.base_rate),
            "factors": [
                {"source": f.source, "multiplier": str(f.multiplier)} for f in self.factors
            ],
            "bonuses": [{"source": s, "points": p} for s, p in self.bonuses],
            "exact": str(self.exact),
            "points": self.points,
            "lines": self.line_points,
        }


def check_lines(lines: list[Line], programme: Programme, unit: str) -> None:
    problems = Violations()
    if unit not in programme.units:
        problems.add(
            "unit",
            f"unknown unit {unit!r}; the programme has: {', '.join(sorted(programme.units))}",
        )
    if not lines:
        problems.add("lines", "at least one line")
    if len(lines) > MAX_LINES:
        problems.add("lines", f"at most {MAX_LINES} lines")
    seen: set[str] = set()
    currencies = {line.amount.currency for line in lines}
    for index, line in enumerate(lines):
        if not line.line_id or line.line_id in seen:
            problems.add(f"lines[{index}].line_id", "required and unique within the order")
        seen.add(line.line_id)
        if line.amount.currency not in programme.currencies:
            problems.add(
                f"lines[{index}].amount.currency_code",
                f"the programme does not price {line.amount.currency}",
            )
    if len(currencies) > 1:
        problems.add("lines", "all lines of an order are in one currency")
    problems.raise_if_any()


def compute_earn(
    programme: Programme,
    unit: str,
    tier: str,
    lines: list[Line],
    occurred_at: datetime,
    badges: AbstractSet[str] = frozenset(),
) -> Earned:
    """The points for an order by a member holding `tier` and `badges` when it happened."""
    check_lines(lines, programme, unit)
    currency = lines[0].amount.currency
    base_rate = programme.currencies[currency].base_rate
    factors: list[Factor] = [Factor(f"unit:{unit}", programme.units[unit].multiplier)]
    if tier in programme.tiers:
        factors.append(Factor(f"tier:{tier}", programme.tiers[tier]))
    bonuses: list[tuple[str, int]] = []
    applicable = sorted(
        (c for c in programme.campaigns if c.applies(unit, tier, occurred_at, badges)),
        key=lambda c: (-c.priority, c.code),
    )
    exclusive = [c for c in applicable if c.exclusive]
    for campaign in exclusive[:1] or applicable:
        if campaign.multiplier is not None:
            factors.append(Factor(f"campaign:{campaign.code}", campaign.multiplier))
        if campaign.bonus_points:
            bonuses.append((f"campaign:{campaign.code}", campaign.bonus_points))

    product = base_rate
    for factor in factors:
        product *= factor.multiplier
    exact_lines = {line.line_id: line.amount.value * product for line in lines}
    exact = sum(exact_lines.values(), Decimal(0))
    whole = int(exact.to_integral_value(rounding=ROUND_FLOOR))
    line_points = allocate_whole(exact_lines, whole)
    spend = Amount(currency, sum((line.amount.value for line in lines), Decimal(0)))
    return Earned(
        spend=spend,
        base_rate=base_rate,
        factors=tuple(factors),
        bonuses=tuple(bonuses),
        exact=_plain(exact),
        line_points=line_points,
        points=whole + sum(points for _, points in bonuses),
        programme_version=programme.version,
        base_spend=Amount(programme.base_currency, programme.to_base(spend)),
    )


def allocate_whole(exact: dict[str, Decimal], whole: int) -> dict[str, int]:
    """Whole points per line adding up to `whole` (largest remainder, then line order), so a
    partial refund takes back exactly its lines' points and a full refund takes back all."""
    floors = {k: int(v.to_integral_value(rounding=ROUND_FLOOR)) for k, v in exact.items()}
    left = whole - sum(floors.values())
    order = sorted(exact, key=lambda k: -(exact[k] - floors[k]))
    for key in order[:left]:
        floors[key] += 1
    return floors


def in_force(versions: Sequence[Programme], at: datetime) -> Programme | None:
    """The version in force at `at` among `versions` (in effect order: effective_from, then
    version): the last one effective by then, or None before the first."""
    index = bisect_right(versions, at, key=lambda p: p.effective_from)
    return versions[index - 1] if index else None


def in_force_between(
    versions: Sequence[Programme], since: datetime, until: datetime
) -> list[Programme]:
    """The versions (of `versions`, in effect order) in force at some time from `since` to
    `until`: the one in force at `since` and every one that took effect after it by `until`.
    Enough to pick, with `in_force`, the version of any time in between."""
    start = max(bisect_right(versions, since, key=lambda p: p.effective_from) - 1, 0)
    end = bisect_right(versions, until, key=lambda p: p.effective_from)
    return list(versions[start:end])


# --- (de)serialisation of the stored rules ------------------------------------------------------
def programme_to_json(programme: Programme) -> dict[str, Any]:
    return {
        "currencies": [
            {
                "code": c.code,
                "base_rate": str(c.base_rate),
                "point_value": str(c.point_value),
                "base_currency_rate": str(c.base_currency_rate),
            }
            for c in programme.currencies.values()
        ],
        "units": [
            {
                "unit": u.unit,
                "multiplier": str(u.multiplier),
                "pending_days": u.pending_days,
                **(
                    {"legacy_points_per_point": str(u.legacy_points_per_point)}
                    if u.legacy_points_per_point is not None
                    else {}
                ),
            }
            for u in programme.units.values()
        ],
        "tiers": {tier: str(m) for tier, m in programme.tiers.items()},
        "expiry_months": programme.expiry_months,
        "campaigns": [
            {
                "code": c.code,
                "name": c.name,
                "start": c.start.isoformat(),
                "end": c.end.isoformat(),
                "units": list(c.units),
                "tiers": list(c.tiers),
                "multiplier": str(c.multiplier) if c.multiplier is not None else None,
                "bonus_points": c.bonus_points,
                "exclusive": c.exclusive,
                "priority": c.priority,
                **({"badges": list(c.badges)} if c.badges else {}),
            }
            for c in programme.campaigns
        ],
        "time_zone": programme.time_zone,
        "base_currency": programme.base_currency,
        "transfer": [programme.transfer_max_per_transfer, programme.transfer_max_per_day],
        "partners": [
            [
                p.partner,
                p.points_per_unit_out,
                p.points_per_unit_in,
                p.min_points,
                p.max_points_per_day,
            ]
            for p in programme.partners.values()
        ],
        "referral": [programme.referrer_points, programme.referee_points],
        "activities": rules_to_json(programme.activities),
    }


def programme_from_json(version: int, effective_from: datetime, data: dict[str, Any]) -> Programme:
    return Programme(
        version=version,
        effective_from=effective_from,
        currencies={
            c["code"]: CurrencyRule(
                c["code"],
                Decimal(c["base_rate"]),
                Decimal(c["point_value"]),
                Decimal(c["base_currency_rate"]),
            )
            for c in data["currencies"]
        },
        units={
            u["unit"]: UnitRule(
                u["unit"],
                Decimal(u["multiplier"]),
                int(u["pending_days"]),
                Decimal(u["legacy_points_per_point"]) if "legacy_points_per_point" in u else None,
            )
            for u in data["units"]
        },
        tiers={tier: Decimal(m) for tier, m in data["tiers"].items()},
        expiry_months=int(data["expiry_months"]),
        campaigns=[
            Campaign(
                code=c["code"],
                name=c["name"],
                start=datetime.fromisoformat(c["start"]),
                end=datetime.fromisoformat(c["end"]),
                units=tuple(c["units"]),
                tiers=tuple(c["tiers"]),
                multiplier=Decimal(c["multiplier"]) if c["multiplier"] is not None else None,
                bonus_points=int(c["bonus_points"]),
                exclusive=bool(c["exclusive"]),
                priority=int(c["priority"]),
                badges=tuple(c.get("badges", ())),
            )
            for c in data["campaigns"]
        ],
        time_zone=data["time_zone"],
        base_currency=data["base_currency"],
        transfer_max_per_transfer=int(data.get("transfer", [0, 0])[0]),
        transfer_max_per_day=int(data.get("transfer", [0, 0])[1]),
        partners={p[0]: PartnerRule(*p) for p in data.get("partners", [])},
        referrer_points=int(data.get("referral", [0, 0])[0]),
        referee_points=int(data.get("referral", [0, 0])[1]),
        activities=rules_from_json(data.get("activities", [])),
    )


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros and never in exponent form: 3086.40 -> 3086.4, 40000.0 -> 40000
    (normalize() alone would write 4E+4)."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    return normal.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else normal
