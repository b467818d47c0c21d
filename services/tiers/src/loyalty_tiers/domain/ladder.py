"""The tier ladder (data, versioned) and how activity places a member on it (pure).

Huayue's ladder (DOMAIN.md): by 12-month qualifying spend, silver 5,000; gold 20,000;
platinum 80,000; diamond 300,000. Upgrades happen as soon as a threshold is met; a refund never
downgrades on the spot (the tier year decides, judged at its end).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations


class Metric(Enum):
    QUALIFYING_SPEND = "qualifying_spend"
    POINTS_EARNED = "points_earned"
    VISITS = "visits"


Activity = dict[Metric, Decimal]


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
        met = [activity.get(m, Decimal(0)) >= v for m, v in rule.items()]
        return all(met) if self.combine_all else any(met)

    def qualifies(self, activity: Activity) -> bool:
        return self._met(self.thresholds, activity)

    def retained(self, activity: Activity) -> bool:
        return self._met(self.retention, activity)


@dataclass
class Ladder:
    version: int
    tiers: list[TierRule]
    window_months: int = 12
    downgrade_to_supported: bool = False

    def after_tier_year(self, current: int, year: Activity) -> int:
        """The tier index after a tier year with this activity: kept, or moved down."""
        if current == 0 or self.tiers[current].retained(year):
            return current
        if self.downgrade_to_supported:
            return min(self.supported(year), current - 1)
        return current - 1

    def validate(self) -> None:
        problems = Violations()
        if len(self.tiers) < 2:
            problems.add("ladder.tiers", "an entry tier and at least one tier above it")
        if not 1 <= self.window_months <= 60:
            problems.add("ladder.window_months", "1 to 60")
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

    def index_of(self, code: str) -> int:
        for index, tier in enumerate(self.tiers):
            if tier.code == code:
                return index
        return 0

    def supported(self, activity: Activity) -> int:
        """The highest tier the activity qualifies for (tiers qualify independently)."""
        best = 0
        for index, tier in enumerate(self.tiers):
            if tier.qualifies(activity):
                best = index
        return best

    def progress(
        self, current: int, activity: Activity
    ) -> tuple[str, list[tuple[Metric, Decimal, Decimal]]]:
        """The next tier's code and, per metric, (current value, required)."""
        if current + 1 >= len(self.tiers):
            return "", []
        nxt = self.tiers[current + 1]
        return nxt.code, [
            (metric, activity.get(metric, Decimal(0)), required)
            for metric, required in nxt.thresholds.items()
        ]


def decimal_of(text: str, field: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidArgument.of([FieldViolation(field, "a decimal such as 20000")]) from None
    if not value.is_finite() or value <= 0:
        raise InvalidArgument.of([FieldViolation(field, "must be positive")])
    return value


def ladder_to_json(ladder: Ladder) -> dict[str, Any]:
    return {
        "window_months": ladder.window_months,
        "downgrade_to_supported": ladder.downgrade_to_supported,
        "tiers": [
            {
                "code": t.code,
                "name_zh": t.name_zh,
                "name_en": t.name_en,
                "thresholds": {m.value: str(v) for m, v in t.thresholds.items()},
                "combine_all": t.combine_all,
                "welcome_gift_code": t.welcome_gift_code,
                "retention": {m.value: str(v) for m, v in t.retention.items()},
            }
            for t in ladder.tiers
        ],
    }


def ladder_from_json(version: int, data: dict[str, Any]) -> Ladder:
    return Ladder(
        version=version,
        window_months=int(data["window_months"]),
        downgrade_to_supported=bool(data.get("downgrade_to_supported", False)),
        tiers=[
            TierRule(
                code=t["code"],
                name_zh=t["name_zh"],
                name_en=t["name_en"],
                thresholds={Metric(m): Decimal(v) for m, v in t["thresholds"].items()},
                combine_all=bool(t["combine_all"]),
                welcome_gift_code=t["welcome_gift_code"],
                retention={Metric(m): Decimal(v) for m, v in t.get("retention", {}).items()},
            )
            for t in data["tiers"]
        ],
    )
