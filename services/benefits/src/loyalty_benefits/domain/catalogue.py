"""The benefits catalogue: benefits per tier (group-wide or one unit's), coupon templates and
rewards, published as versioned data. Pure rules, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loyalty_kit.errors import Violations
from loyalty_kit.money import Amount
from loyalty_kit.timestamps import add_months

CODE = re.compile(r"^[a-z0-9][a-z0-9._\-]{0,63}$")
UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,31}$")
DEFAULT_TIME_ZONE = "Asia/Shanghai"
TIER_YEAR_MONTHS = 12


class BenefitKind(StrEnum):
    PERCENTAGE_DISCOUNT = "percentage_discount"
    AMOUNT_OFF = "amount_off"
    FREE_SERVICE = "free_service"
    GIFT = "gift"
    PRIORITY_ACCESS = "priority_access"


class QuotaPeriod(StrEnum):
    NONE = "none"  # only with an unlimited quota
    TIER_YEAR = "tier_year"
    CALENDAR_YEAR = "calendar_year"
    MONTH = "month"


class CouponKind(StrEnum):
    AMOUNT_OFF = "amount_off"
    PERCENTAGE_OFF = "percentage_off"


@dataclass(frozen=True)
class Benefit:
    code: str
    name_zh: str
    name_en: str
    kind: BenefitKind
    percentage: Decimal | None = None
    amount: Amount | None = None
    unit: str = ""  # empty: the whole group
    tiers: tuple[str, ...] = ()  # empty: every member
    quota: int = 0  # 0: unlimited
    quota_period: QuotaPeriod = QuotaPeriod.NONE
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def in_force(self, now: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= now) and (
            self.valid_until is None or now < self.valid_until
        )

    def usable_at(self, unit: str) -> bool:
        """Group benefits are usable everywhere; a unit's own only there."""
        return not self.unit or self.unit == unit

    def for_tier(self, tier: str) -> bool:
        return not self.tiers or tier in self.tiers


@dataclass(frozen=True)
class CouponTemplate:
    code: str
    name_zh: str
    name_en: str
    kind: CouponKind
    amount: Amount | None = None
    percentage: Decimal | None = None
    minimum_spend: Amount | None = None
    unit: str = ""  # empty: any unit
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    valid_days: int = 0

    def window(self, issued_at: datetime) -> tuple[datetime, datetime]:
        """When a coupon issued now is valid: [from, until)."""
        start = max(self.valid_from, issued_at) if self.valid_from else issued_at
        ends = []
        if self.valid_until is not None:
            ends.append(self.valid_until)
        if self.valid_days:
            ends.append(issued_at + timedelta(days=self.valid_days))
        return start, min(ends)


@dataclass(frozen=True)
class Reward:
    code: str
    name_zh: str
    name_en: str
    unit: str
    points: int
    coupon_template: str


@dataclass(frozen=True)
class TierBenefits:
    tier: str
    welcome_coupon_template: str = ""
    birthday_coupon_template: str = ""


@dataclass(frozen=True)
class Period:
    """The period a quota counts in: its key (part of the usage row's key) and its end."""

    key: str
    end: datetime | None


UNLIMITED = Period("unlimited", None)


@dataclass
class Catalogue:
    version: int
    time_zone: str = DEFAULT_TIME_ZONE
    tiers: list[TierBenefits] = field(default_factory=list)
    benefits: list[Benefit] = field(default_factory=list)
    coupon_templates: list[CouponTemplate] = field(default_factory=list)
    rewards: list[Reward] = field(default_factory=list)
    created_at: datetime | None = None

    def benefit(self, code: str) -> Benefit | None:
        return next((b for b in self.benefits if b.code == code), None)

    def template(self, code: str) -> CouponTemplate | None:
        return next((t for t in self.coupon_templates if t.code == code), None)

    def reward(self, code: str) -> Reward | None:
        return next((r for r in self.rewards if r.code == code), None)

    def rank(self, tier: str) -> int | None:
        """The tier's place on the ladder (entry tier 0), None if the catalogue does not know it."""
        return next((i for i, t in enumerate(self.tiers) if t.tier == tier), None)

    def is_upgrade(self, before: str, after: str) -> bool:
        to = self.rank(after)
        if to is None:
            return False
        since = self.rank(before)
        return since is None or to > since

    def welcome_template(self, tier: str) -> CouponTemplate | None:
        rank = self.rank(tier)
        if rank is None or not self.tiers[rank].welcome_coupon_template:
            return None
        return self.template(self.tiers[rank].welcome_coupon_template)

    def birthday_template(self, tier: str) -> CouponTemplate | None:
        rank = self.rank(tier)
        if rank is None or not self.tiers[rank].birthday_coupon_template:
            return None
        return self.template(self.tiers[rank].birthday_coupon_template)

    @property
    def entry_tier(self) -> str:
        return self.tiers[0].tier if self.tiers else ""

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def period_of(self, benefit: Benefit, now: datetime, tier_year_end: datetime | None) -> Period:
        """The quota period `now` falls in. A tier year runs to the member's tier year end and
        then on in 12-month steps until the tiers service judges it; before a member's first
        tier year, tier-year quotas count by calendar year."""
        if benefit.quota == 0:
            return UNLIMITED
        if benefit.quota_period is QuotaPeriod.TIER_YEAR and tier_year_end is not None:
            end = tier_year_end
            while end <= now:
                end = add_months(end, TIER_YEAR_MONTHS)
            return Period(f"tier-year:{end.astimezone(UTC).isoformat()}", end)
        local = now.astimezone(self.zone())
        if benefit.quota_period is QuotaPeriod.MONTH:
            first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            return Period(f"month:{local.year}-{local.month:02d}", add_months(first, 1))
        first = local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        return Period(f"year:{local.year}", add_months(first, 12))

    def validate(self) -> None:
        """INVALID_ARGUMENT with one field violation per problem, all at once."""
        problems = Violations()
        try:
            self.zone()
        except (ZoneInfoNotFoundError, ValueError):
            problems.add("catalogue.time_zone", "an IANA time zone such as Asia/Shanghai")
        tier_codes = [t.tier for t in self.tiers]
        template_codes = {t.code for t in self.coupon_templates}
        _unique(problems, "catalogue.tiers", "tier", tier_codes)
        _unique(problems, "catalogue.benefits", "code", [b.code for b in self.benefits])
        _unique(
            problems, "catalogue.coupon_templates", "code", [t.code for t in self.coupon_templates]
        )
        _unique(problems, "catalogue.rewards", "code", [r.code for r in self.rewards])
        for i, tier in enumerate(self.tiers):
            where = f"catalogue.tiers[{i}]"
            _code(problems, f"{where}.tier", tier.tier)
            for name in ("welcome_coupon_template", "birthday_coupon_template"):
                code = getattr(tier, name)
                if code and code not in template_codes:
                    problems.add(f"{where}.{name}", "not a coupon template here")
        for i, benefit in enumerate(self.benefits):
            _check_benefit(problems, f"catalogue.benefits[{i}]", benefit, set(tier_codes))
        for i, template in enumerate(self.coupon_templates):
            _check_template(problems, f"catalogue.coupon_templates[{i}]", template)
        for i, reward in enumerate(self.rewards):
            where = f"catalogue.rewards[{i}]"
            _code(problems, f"{where}.code", reward.code)
            _unit(problems, f"{where}.unit", reward.unit, required=True)
            if reward.points <= 0:
                problems.add(f"{where}.points", "a price in points, greater than zero")
            if reward.coupon_template not in template_codes:
                problems.add(f"{where}.coupon_template", "not a coupon template here")
        problems.raise_if_any()


def _unique(problems: Violations, where: str, name: str, codes: list[str]) -> None:
    seen: set[str] = set()
    for i, code in enumerate(codes):
        if code in seen:
            problems.add(f"{where}[{i}].{name}", f"{code!r} appears twice")
        seen.add(code)


def _code(problems: Violations, where: str, code: str) -> None:
    if not CODE.match(code):
        problems.add(where, "a code: lower-case letters, digits, '.', '_', '-' (1-64)")


def _unit(problems: Violations, where: str, unit: str, *, required: bool = False) -> None:
    if (unit or required) and not UNIT.match(unit):
        problems.add(where, "a business unit code such as 'hotel'")


def _window(problems: Violations, where: str, start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        problems.add(f"{where}.valid_until", "must be after valid_from")


def _percentage(problems: Violations, where: str, value: Decimal | None) -> None:
    if value is None or not (0 < value < 100):
        problems.add(where, "a percentage between 0 and 100, e.g. '10'")


def _check_benefit(problems: Violations, where: str, benefit: Benefit, tiers: set[str]) -> None:
    _code(problems, f"{where}.code", benefit.code)
    _unit(problems, f"{where}.unit", benefit.unit)
    if benefit.kind is BenefitKind.PERCENTAGE_DISCOUNT:
        _percentage(problems, f"{where}.percentage", benefit.percentage)
    if benefit.kind is BenefitKind.AMOUNT_OFF and benefit.amount is None:
        problems.add(f"{where}.amount", "required for an amount-off benefit")
    for j, tier in enumerate(benefit.tiers):
        if tier not in tiers:
            problems.add(f"{where}.tiers[{j}]", f"{tier!r} is not a tier of this catalogue")
    if benefit.quota < 0:
        problems.add(f"{where}.quota", "uses per period, 0 for unlimited")
    if benefit.quota > 0 and benefit.quota_period is QuotaPeriod.NONE:
        problems.add(f"{where}.quota_period", "required with a quota")
    _window(problems, where, benefit.valid_from, benefit.valid_until)


def _check_template(problems: Violations, where: str, template: CouponTemplate) -> None:
    _code(problems, f"{where}.code", template.code)
    _unit(problems, f"{where}.unit", template.unit)
    if template.kind is CouponKind.AMOUNT_OFF:
        if template.amount is None:
            problems.add(f"{where}.amount", "required for an amount-off coupon")
        elif template.minimum_spend and template.minimum_spend.currency != template.amount.currency:
            problems.add(f"{where}.minimum_spend.currency_code", "the amount's currency")
    else:
        _percentage(problems, f"{where}.percentage", template.percentage)
    if template.valid_until is None and template.valid_days <= 0:
        problems.add(f"{where}.valid_until", "set valid_until or valid_days (> 0)")
    if template.valid_days < 0:
        problems.add(f"{where}.valid_days", "must not be negative")
    _window(problems, where, template.valid_from, template.valid_until)


# --- storage form (jsonb) ----------------------------------------------------------------------


def _amount_json(amount: Amount | None) -> Any:
    return None if amount is None else {"currency": amount.currency, "value": str(amount.value)}


def _amount_of(data: Any) -> Amount | None:
    return None if data is None else Amount(data["currency"], Decimal(data["value"]))


def _time_json(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _time_of(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _decimal_of(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def catalogue_to_json(catalogue: Catalogue) -> dict[str, Any]:
    return {
        "time_zone": catalogue.time_zone,
        "tiers": [
            [t.tier, t.welcome_coupon_template, t.birthday_coupon_template] for t in catalogue.tiers
        ],
        "benefits": [
            {
                "code": b.code,
                "name_zh": b.name_zh,
                "name_en": b.name_en,
                "kind": b.kind.value,
                "percentage": None if b.percentage is None else str(b.percentage),
                "amount": _amount_json(b.amount),
                "unit": b.unit,
                "tiers": list(b.tiers),
                "quota": b.quota,
                "quota_period": b.quota_period.value,
                "valid_from": _time_json(b.valid_from),
                "valid_until": _time_json(b.valid_until),
            }
            for b in catalogue.benefits
        ],
        "coupon_templates": [
            {
                "code": t.code,
                "name_zh": t.name_zh,
                "name_en": t.name_en,
                "kind": t.kind.value,
                "amount": _amount_json(t.amount),
                "percentage": None if t.percentage is None else str(t.percentage),
                "minimum_spend": _amount_json(t.minimum_spend),
                "unit": t.unit,
                "valid_from": _time_json(t.valid_from),
                "valid_until": _time_json(t.valid_until),
                "valid_days": t.valid_days,
            }
            for t in catalogue.coupon_templates
        ],
        "rewards": [
            [r.code, r.name_zh, r.name_en, r.unit, r.points, r.coupon_template]
            for r in catalogue.rewards
        ],
    }


def catalogue_from_json(version: int, created_at: datetime, data: dict[str, Any]) -> Catalogue:
    return Catalogue(
        version=version,
        time_zone=data["time_zone"],
        tiers=[TierBenefits(*tier) for tier in data["tiers"]],
        benefits=[
            Benefit(
                code=b["code"],
                name_zh=b["name_zh"],
                name_en=b["name_en"],
                kind=BenefitKind(b["kind"]),
                percentage=_decimal_of(b["percentage"]),
                amount=_amount_of(b["amount"]),
                unit=b["unit"],
                tiers=tuple(b["tiers"]),
                quota=b["quota"],
                quota_period=QuotaPeriod(b["quota_period"]),
                valid_from=_time_of(b["valid_from"]),
                valid_until=_time_of(b["valid_until"]),
            )
            for b in data["benefits"]
        ],
        coupon_templates=[
            CouponTemplate(
                code=t["code"],
                name_zh=t["name_zh"],
                name_en=t["name_en"],
                kind=CouponKind(t["kind"]),
                amount=_amount_of(t["amount"]),
                percentage=_decimal_of(t["percentage"]),
                minimum_spend=_amount_of(t["minimum_spend"]),
                unit=t["unit"],
                valid_from=_time_of(t["valid_from"]),
                valid_until=_time_of(t["valid_until"]),
                valid_days=t["valid_days"],
            )
            for t in data["coupon_templates"]
        ],
        rewards=[Reward(*r) for r in data["rewards"]],
        created_at=created_at,
    )
