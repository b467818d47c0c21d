"""The tier ladder (data, versioned) and how activity places a member on it (pure).

Huayue's ladder (docs/worked-example.md): by 12-month qualifying spend, silver 5,000; gold 20,000;
platinum 80,000; diamond 300,000. Upgrades happen as soon as a threshold is met; a refund never
downgrades on the spot (the tier year decides, judged at its end). A grant or a paid membership
can lift a member above what the activity holds; the higher of the two is the member's tier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations
from loyalty_kit.money import (
    DEFAULT_BASE_CURRENCY,
    fraction_digits,
    minor_units,
    parse_currency,
    parse_decimal,
    parse_money_decimal,
)
from loyalty_kit.timestamps import add_months

TIER_YEAR_MONTHS = 12
ZERO = Decimal(0)


class Metric(Enum):
    QUALIFYING_SPEND = "qualifying_spend"
    POINTS_EARNED = "points_earned"
    VISITS = "visits"
    GROWTH_VALUE = "growth_value"


class Window(Enum):
    ROLLING_MONTHS = "rolling_months"
    CALENDAR_YEAR = "calendar_year"
    TIER_YEAR = "tier_year"


# Metrics counted in the ladder's base currency: their thresholds and progress are amounts of it.
MONEY_METRICS = frozenset({Metric.QUALIFYING_SPEND, Metric.GROWTH_VALUE})

Activity = dict[Metric, Decimal]


@dataclass(frozen=True)
class Totals:
    """One unit's activity over some time: spend in the base currency, points, visits."""

    spend: Decimal = ZERO
    points: int = 0
    visits: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.spend + other.spend, self.points + other.points, self.visits + other.visits
        )

    def order_counted_before(self) -> Totals:
        """An earn whose order's spend and visit were counted already (an imported order, see
        `domain/orders.py`): only its points are new."""
        return Totals(ZERO, self.points, 0)


UnitActivity = Mapping[str, Totals]  # unit -> totals


@dataclass(frozen=True)
class TierRule:
    code: str
    name_zh: str = ""
    name_en: str = ""
    thresholds: dict[Metric, Decimal] = field(default_factory=dict)
    combine_all: bool = False
    welcome_gift_code: str = ""
    retention: dict[Metric, Decimal] = field(default_factory=dict)

    def _met(self, rule: dict[Metric, Decimal], activity: Activity) -> bool:
        if not rule:
            return True
        met = [activity.get(m, ZERO) >= v for m, v in rule.items()]
        return all(met) if self.combine_all else any(met)

    def qualifies(self, activity: Activity) -> bool:
        return self._met(self.thresholds, activity)

    def retained(self, activity: Activity) -> bool:
        return self._met(self.retention, activity)


Progress = list[tuple[Metric, Decimal, Decimal]]  # (metric, current, required)


@dataclass
class Ladder:
    version: int
    tiers: list[TierRule]
    window_months: int = 12
    downgrade_to_supported: bool = False
    window: Window = Window.ROLLING_MONTHS
    growth_weights: dict[str, Decimal] = field(default_factory=dict)
    grace_days: int = 0
    time_zone: str = "UTC"
    base_currency: str = DEFAULT_BASE_CURRENCY

    # -- activity ---------------------------------------------------------------------------

    def activity(self, by_unit: UnitActivity, *extra: tuple[str, Totals]) -> Activity:
        """The metrics of per-unit totals (growth value weighs each unit's spend)."""
        units: dict[str, Totals] = dict(by_unit)
        for unit, totals in extra:
            units[unit] = units.get(unit, Totals()) + totals
        spend, growth, points, visits = ZERO, ZERO, 0, 0
        for unit, totals in units.items():
            spend += totals.spend
            growth += totals.spend * self.growth_weights.get(unit, Decimal(1))
            points += totals.points
            visits += totals.visits
        return {
            Metric.QUALIFYING_SPEND: spend,
            Metric.GROWTH_VALUE: growth,
            Metric.POINTS_EARNED: Decimal(points),
            Metric.VISITS: Decimal(visits),
        }

    def window_start(self, now: datetime, tier_year_end: datetime | None) -> datetime:
        """Where the qualification window that ends `now` starts."""
        if self.window is Window.CALENDAR_YEAR:
            local = now.astimezone(ZoneInfo(self.time_zone))
            return local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        if self.window is Window.TIER_YEAR:
            if tier_year_end is not None:
                return add_months(tier_year_end, -TIER_YEAR_MONTHS)
            return add_months(now, -TIER_YEAR_MONTHS)
        return add_months(now, -self.window_months)

    def earliest_window_start(self, now: datetime) -> datetime | None:
        """Where every member's qualification window ending `now` starts at the earliest
        (None: it depends on each member's tier year)."""
        return None if self.window is Window.TIER_YEAR else self.window_start(now, None)

    def tier_year(self, end: datetime) -> tuple[datetime, datetime]:
        """The activity that counts toward retention of the tier year ending at `end`: the
        year itself and the grace days after it."""
        return add_months(end, -TIER_YEAR_MONTHS), end + timedelta(days=self.grace_days)

    # -- placing a member -------------------------------------------------------------------

    def index_of(self, code: str) -> int:
        """The tier's rung; a code the ladder no longer has counts as the entry tier."""
        for index, tier in enumerate(self.tiers):
            if tier.code == code:
                return index
        return 0

    def has_tier_above_entry(self, code: str) -> bool:
        return any(t.code == code for t in self.tiers[1:])

    def supported(self, activity: Activity) -> int:
        """The highest tier the activity qualifies for (tiers qualify independently)."""
        best = 0
        for index, tier in enumerate(self.tiers):
            if tier.qualifies(activity):
                best = index
        return best

    def higher(self, *codes: str) -> str:
        """The highest of these tiers."""
        return self.tiers[max((self.index_of(c) for c in codes), default=0)].code

    def after_tier_year(self, current: int, year: Activity) -> int:
        """The tier index after a tier year with this activity: kept, or moved down."""
        if current == 0 or self.tiers[current].retained(year):
            return current
        if self.downgrade_to_supported:
            return min(self.supported(year), current - 1)
        return current - 1

    def progress(self, current: int, activity: Activity) -> tuple[str, Progress]:
        """The next tier's code and, per metric, (current value, required)."""
        if current + 1 >= len(self.tiers):
            return "", []
        nxt = self.tiers[current + 1]
        return nxt.code, [(m, activity.get(m, ZERO), v) for m, v in nxt.thresholds.items()]

    def retention_progress(self, current: int, year: Activity) -> Progress:
        if current == 0:
            return []
        return [(m, year.get(m, ZERO), v) for m, v in self.tiers[current].retention.items()]

    # -- checking a new ladder --------------------------------------------------------------

    def validate(self) -> None:
        problems = Violations()
        if len(self.tiers) < 2:
            problems.add("ladder.tiers", "an entry tier and at least one tier above it")
        if not 1 <= self.window_months <= 60:
            problems.add("ladder.window_months", "1 to 60")
        if not 0 <= self.grace_days <= 366:
            problems.add("ladder.grace_days", "0 to 366")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.add("ladder.time_zone", "an IANA time zone such as Asia/Shanghai")
        try:
            parse_currency(self.base_currency, "ladder.base_currency_code")
        except InvalidArgument as error:
            problems.items.extend(error.field_violations)
        for unit, weight in self.growth_weights.items():
            if not unit.strip():
                problems.add("ladder.growth_weights", "unit codes must not be empty")
            if weight < 0:
                problems.add(f"ladder.growth_weights[{unit}]", "must not be negative")
        codes: set[str] = set()
        for index, tier in enumerate(self.tiers):
            where = f"ladder.tiers[{index}]"
            if not tier.code or tier.code in codes:
                problems.add(f"{where}.code", "required and unique")
            codes.add(tier.code)
            if index == 0 and tier.thresholds:
                problems.add(f"{where}.thresholds", "the entry tier has no thresholds")
            if index > 0 and not tier.thresholds:
                problems.add(f"{where}.thresholds", "at least one threshold")
            if index > 1:
                below = self.tiers[index - 1].thresholds
                for metric, value in tier.thresholds.items():
                    if metric in below and value <= below[metric]:
                        problems.add(
                            f"{where}.thresholds",
                            f"{metric.value} must be higher than {self.tiers[index - 1].code}'s",
                        )
        problems.raise_if_any()

    def check_spend(self, spends: Iterable[Decimal], field: str) -> None:
        """Spend is an amount of the base currency: more digits than it has are refused
        (`field` is formatted with each spend's position)."""
        problems = Violations()
        allowed = minor_units(self.base_currency)
        for index, spend in enumerate(spends):
            if (digits := fraction_digits(spend)) > allowed:
                problems.add(
                    field.format(index),
                    f"{self.base_currency} has {allowed} decimal places; got {digits}",
                )
        problems.raise_if_any()


def decimal_of(
    text: str, field: str, *, zero_ok: bool = False, currency: str | None = None
) -> Decimal:
    """A threshold, weight or spend: positive (or zero when `zero_ok`); an amount of
    `currency`, when given, has at most its minor digits."""
    if currency is None:
        value = parse_decimal(text, field, example="20000")
    else:
        value = parse_money_decimal(text, currency, field)
    if value < 0 or (value == 0 and not zero_ok):
        raise InvalidArgument.of(
            [FieldViolation(field, "must not be negative" if zero_ok else "must be positive")]
        )
    return value


def _rule_json(rule: dict[Metric, Decimal]) -> dict[str, str]:
    return {m.value: str(v) for m, v in rule.items()}


def _rule_of(data: dict[str, str]) -> dict[Metric, Decimal]:
    return {Metric(m): Decimal(v) for m, v in data.items()}


def ladder_to_json(ladder: Ladder) -> dict[str, Any]:
    return {
        "window_months": ladder.window_months,
        "window": ladder.window.value,
        "downgrade_to_supported": ladder.downgrade_to_supported,
        "growth_weights": {u: str(w) for u, w in ladder.growth_weights.items()},
        "grace_days": ladder.grace_days,
        "time_zone": ladder.time_zone,
        "base_currency": ladder.base_currency,
        "tiers": [
            {
                "code": t.code,
                "name_zh": t.name_zh,
                "name_en": t.name_en,
                "thresholds": _rule_json(t.thresholds),
                "combine_all": t.combine_all,
                "welcome_gift_code": t.welcome_gift_code,
                "retention": _rule_json(t.retention),
            }
            for t in ladder.tiers
        ],
    }


def ladder_from_json(version: int, data: dict[str, Any]) -> Ladder:
    return Ladder(
        version=version,
        window_months=int(data["window_months"]),
        window=Window(data.get("window", Window.ROLLING_MONTHS.value)),
        downgrade_to_supported=bool(data.get("downgrade_to_supported", False)),
        growth_weights={u: Decimal(w) for u, w in data.get("growth_weights", {}).items()},
        grace_days=int(data.get("grace_days", 0)),
        time_zone=data.get("time_zone", "UTC"),
        # Ladders published before the ladder named its currency counted the points
        # programme's default base currency.
        base_currency=data.get("base_currency", DEFAULT_BASE_CURRENCY),
        tiers=[
            TierRule(
                code=t["code"],
                name_zh=t["name_zh"],
                name_en=t["name_en"],
                thresholds=_rule_of(t["thresholds"]),
                combine_all=bool(t["combine_all"]),
                welcome_gift_code=t["welcome_gift_code"],
                retention=_rule_of(t.get("retention", {})),
            )
            for t in data["tiers"]
        ],
    )


def totals_by_unit(rows: Iterable[tuple[str, Decimal, int, int]]) -> dict[str, Totals]:
    return {unit: Totals(Decimal(s), int(p), int(v)) for unit, s, p, v in rows}
