"""Behaviour points (行为激励): the programme's rules for recorded activities and the decision
what one activity awards.

A rule gives an activity type (at every unit, or at one) its points, the unit funding them and
its limits: at most N awards per member per day, week, month or ever, counted at every unit or
at the recording unit only, and optionally per value of an attribute (once per survey). An
activity over a limit is still recorded; it awards nothing and says which limit stopped it.
Only awarded activities count towards a limit. Periods are calendar periods in the programme's
time zone, by when the activity occurred.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from loyalty_kit.errors import Violations

BUILT_IN_TYPES = frozenset(
    {"check_in", "review", "survey_answered", "app_sign_up", "profile_completed"}
)
# A unit's own type: "<unit>:<name>", e.g. "cinema:trailer_watched".
_OWN_TYPE = re.compile(r"^([a-z0-9][a-z0-9_-]{0,39}):([a-z0-9][a-z0-9_]{0,63})$")
MAX_ATTRIBUTES = 20
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 256
MAX_AWARD_POINTS = 1_000_000

NO_RULE = "NO_RULE"
LIMIT_REACHED = "LIMIT_REACHED"


class Period(Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    EVER = "ever"


@dataclass(frozen=True)
class ActivityLimit:
    period: Period
    max_awards: int
    per_unit: bool = False
    per_attribute: str = ""

    def describe(self) -> str:
        """For the answer: "1 per day", "5 per month at the unit", "1 per survey_id ever"."""
        text = f"{self.max_awards} per {self.per_attribute or self.period.value}"
        if self.per_attribute:
            text += " ever" if self.period is Period.EVER else f" a {self.period.value}"
        if self.per_unit:
            text += " at the unit"
        return text


@dataclass(frozen=True)
class ActivityRule:
    activity_type: str
    points: int
    unit: str = ""  # "": every unit
    funding_unit: str = ""  # "": the unit recording the activity
    limits: tuple[ActivityLimit, ...] = ()


def unit_of_type(activity_type: str) -> str | None:
    """The unit owning a unit's own type ("cinema" of "cinema:trailer_watched"); None for a
    built-in type or a name of no known shape."""
    match = _OWN_TYPE.match(activity_type)
    return match.group(1) if match else None


def rule_for(rules: Sequence[ActivityRule], activity_type: str, unit: str) -> ActivityRule | None:
    """The unit's own rule for the type, else the rule for every unit, else None."""
    general = None
    for rule in rules:
        if rule.activity_type != activity_type:
            continue
        if rule.unit == unit:
            return rule
        if not rule.unit:
            general = rule
    return general


def window(period: Period, at: datetime, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """The calendar period holding `at` in `zone`: [start, end); (None, None) for ever."""
    if period is Period.EVER:
        return None, None
    local = at.astimezone(zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        start = day
        end = day + timedelta(days=1)
    elif period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    # Midnight as the zone keeps it that day (a day of a clock change is 23 or 25 hours long).
    return start.replace(tzinfo=zone), end.replace(tzinfo=zone)


@dataclass(frozen=True)
class Count:
    """What a limit asks the ledger: the member's awarded activities of the type in a window,
    at one unit or all, with one attribute value or any."""

    activity_type: str
    start: datetime | None
    end: datetime | None
    unit: str | None
    attribute: tuple[str, str] | None


def counts_for(
    rule: ActivityRule,
    unit: str,
    occurred_at: datetime,
    attributes: Mapping[str, str],
    zone: ZoneInfo,
) -> list[tuple[ActivityLimit, Count]]:
    """The count each of the rule's limits needs."""
    asked = []
    for limit in rule.limits:
        start, end = window(limit.period, occurred_at, zone)
        attribute = (
            (limit.per_attribute, attributes[limit.per_attribute]) if limit.per_attribute else None
        )
        asked.append(
            (
                limit,
                Count(rule.activity_type, start, end, unit if limit.per_unit else None, attribute),
            )
        )
    return asked


@dataclass(frozen=True)
class Award:
    """What an activity awards: its points and who funds them, or why nothing."""

    points: int
    funding_unit: str
    limit_reason: str = ""
    limit: str = ""


def decide(
    rule: ActivityRule | None, unit: str, counted: Sequence[tuple[ActivityLimit, int]]
) -> Award:
    """The award, given each limit with the awards already counted for it."""
    if rule is None or rule.points <= 0:
        return Award(0, "", NO_RULE)
    funding = rule.funding_unit or unit
    for limit, awarded in counted:
        if awarded >= limit.max_awards:
            return Award(0, funding, LIMIT_REACHED, limit.describe())
    return Award(rule.points, funding)


def check_activity(
    activity_type: str,
    attributes: Mapping[str, str],
    rules: Sequence[ActivityRule],
    unit: str,
    problems: Violations,
) -> None:
    """A recorded activity's type and attributes: a built-in type, or the recording unit's
    own type declared in the programme; attributes within bounds, with every attribute a
    limit counts by."""
    own = unit_of_type(activity_type)
    if activity_type not in BUILT_IN_TYPES:
        declared = {r.activity_type for r in rules}
        if own is None or activity_type not in declared:
            problems.add(
                "activity_type",
                f"unknown type {activity_type!r}: one of {', '.join(sorted(BUILT_IN_TYPES))}, "
                "or a unit's own <unit>:<name> declared in the programme",
            )
            return
        if own != unit:
            problems.add("activity_type", f"{activity_type!r} is unit {own!r}'s own type")
            return
    if len(attributes) > MAX_ATTRIBUTES:
        problems.add("attributes", f"at most {MAX_ATTRIBUTES}")
    for key, value in attributes.items():
        if not key or len(key) > MAX_ATTRIBUTE_KEY:
            problems.add("attributes", f"keys of 1 to {MAX_ATTRIBUTE_KEY} characters")
        if len(value) > MAX_ATTRIBUTE_VALUE:
            problems.add(f"attributes[{key}]", f"at most {MAX_ATTRIBUTE_VALUE} characters")
    rule = rule_for(rules, activity_type, unit)
    for limit in rule.limits if rule else ():
        if limit.per_attribute and not attributes.get(limit.per_attribute):
            problems.add(
                f"attributes[{limit.per_attribute}]",
                f"required: the programme limits {activity_type} per {limit.per_attribute}",
            )


def check_rules(rules: Sequence[ActivityRule], units: Mapping[str, Any], group: str) -> Violations:
    """A programme's activity rules: known types and units, one rule per type and unit, sane
    points and limits."""
    problems = Violations()
    seen: set[tuple[str, str]] = set()
    for index, rule in enumerate(rules):
        where = f"programme.activities[{index}]"
        own = unit_of_type(rule.activity_type)
        if rule.activity_type not in BUILT_IN_TYPES and (own is None or own not in units):
            problems.add(
                f"{where}.activity_type",
                "a built-in type or <unit>:<name> of a unit of the programme",
            )
        if (rule.activity_type, rule.unit) in seen:
            problems.add(f"{where}", "one rule per activity type and unit")
        seen.add((rule.activity_type, rule.unit))
        if rule.unit and rule.unit not in units:
            problems.add(f"{where}.unit", f"unknown unit {rule.unit!r}")
        if rule.funding_unit and rule.funding_unit not in units and rule.funding_unit != group:
            problems.add(f"{where}.funding_unit", f"a unit of the programme or {group!r}")
        if not 0 <= rule.points <= MAX_AWARD_POINTS:
            problems.add(f"{where}.points", f"0 to {MAX_AWARD_POINTS}")
        for n, limit in enumerate(rule.limits):
            if limit.max_awards <= 0:
                problems.add(f"{where}.limits[{n}].max_awards", "must be positive")
    return problems


def rules_to_json(rules: Sequence[ActivityRule]) -> list[dict[str, Any]]:
    return [
        {
            "type": r.activity_type,
            "unit": r.unit,
            "points": r.points,
            "funding_unit": r.funding_unit,
            "limits": [
                [lim.period.value, lim.max_awards, lim.per_unit, lim.per_attribute]
                for lim in r.limits
            ],
        }
        for r in rules
    ]


def rules_from_json(data: Sequence[dict[str, Any]]) -> list[ActivityRule]:
    return [
        ActivityRule(
            activity_type=r["type"],
            points=int(r["points"]),
            unit=r["unit"],
            funding_unit=r["funding_unit"],
            limits=tuple(
                ActivityLimit(Period(p), int(n), bool(u), str(a)) for p, n, u, a in r["limits"]
            ),
        )
        for r in data
    ]


@dataclass
class RecordedActivity:
    """An activity as kept (once per unit and activity ID) and answered again to a retry."""

    member_id: str
    unit: str
    activity_type: str
    activity_id: str
    occurred_at: datetime
    attributes: dict[str, str]
    fingerprint: str  # of the request as sent: the same ID with another activity is refused
    recorded_at: datetime
    programme_version: int
    points: int = 0
    funding_unit: str = ""
    posting_id: str = ""
    limit_reason: str = ""
    limit: str = ""

    def settle(self, award: Award, posting_id: str) -> None:
        self.points, self.funding_unit = award.points, award.funding_unit
        self.limit_reason, self.limit = award.limit_reason, award.limit
        self.posting_id = posting_id
