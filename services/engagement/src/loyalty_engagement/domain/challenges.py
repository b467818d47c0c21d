"""Challenges, badges and leaderboards as rules over members' events (pure).

A challenge is a goal (purchases, spend, distinct units, a streak of days with an activity)
within a window: calendar months or quarters in the challenge's time zone, or consecutive
windows of N days from its start. A member's progress is kept per challenge and period
(`Progress`); `Progress.count` applies one event and says whether it completed the goal. The
event's key is remembered by the store, so an event counts once however often it arrives, and a
completion is kept per member, challenge and period key (`completion_key`): paid once.

Purchases are kept with their refunds (`Purchase`): a purchase goal's progress is the fold of
the period's purchases net of refunds (`purchase_progress`), so a refund takes back exactly what
its purchase added, whatever the order the two arrive in and however often. A purchase refunded
in full no longer counts (nor its unit); one refunded in part still counts, with the spend left.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.kernel.units import GROUP

DEFAULT_TIME_ZONE = "Asia/Shanghai"
BADGE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class GoalKind(enum.StrEnum):
    PURCHASES = "purchases"
    SPEND = "spend"
    DISTINCT_UNITS = "distinct_units"
    STREAK = "streak"


class WindowKind(enum.StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    ROLLING_DAYS = "rolling_days"


class Metric(enum.StrEnum):
    REFERRALS = "referrals"
    SPEND = "spend"
    VISITS = "visits"


@dataclass(frozen=True)
class Goal:
    kind: GoalKind
    target: int
    unit: str = ""
    units: tuple[str, ...] = ()
    activity_type: str = ""


@dataclass(frozen=True)
class Window:
    kind: WindowKind
    days: int = 0


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name or DEFAULT_TIME_ZONE)


def local_day(at: datetime, time_zone: str) -> date:
    return at.astimezone(zone(time_zone)).date()


def period_of(window: Window, at: datetime, time_zone: str, start: datetime) -> str:
    """The period an event at `at` falls in: "2026-12", "2026-Q4", or "2026-12-01+30" (the
    rolling window's first day and length)."""
    day = local_day(at, time_zone)
    match window.kind:
        case WindowKind.MONTH:
            return f"{day.year}-{day.month:02d}"
        case WindowKind.QUARTER:
            return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
        case WindowKind.ROLLING_DAYS:
            first = local_day(start, time_zone)
            n = (day - first).days // window.days
            return f"{(first + timedelta(days=n * window.days)).isoformat()}+{window.days}"
    raise ValueError(window)


def period_bounds(window: Window, period: str, time_zone: str) -> tuple[datetime, datetime]:
    """A period's first moment and the first moment after it."""
    tz = zone(time_zone)
    if window.kind is WindowKind.ROLLING_DAYS:
        first_s, days_s = period.split("+")
        first = date.fromisoformat(first_s)
        end = first + timedelta(days=int(days_s))
    elif window.kind is WindowKind.QUARTER:
        year_s, q_s = period.split("-Q")
        first = date(int(year_s), (int(q_s) - 1) * 3 + 1, 1)
        end = _months_after(first, 3)
    else:
        year_s, month_s = period.split("-")
        first = date(int(year_s), int(month_s), 1)
        end = _months_after(first, 1)
    return (
        datetime(first.year, first.month, first.day, tzinfo=tz).astimezone(UTC),
        datetime(end.year, end.month, end.day, tzinfo=tz).astimezone(UTC),
    )


def _months_after(first: date, months: int) -> date:
    m = first.month - 1 + months
    return date(first.year + m // 12, m % 12 + 1, 1)


def valid_period(window: Window, period: str) -> bool:
    year = r"^[12]\d{3}"
    pattern = year + (r"-Q[1-4]$" if window.kind is WindowKind.QUARTER else r"-(0[1-9]|1[0-2])$")
    return re.match(pattern, period) is not None


@dataclass(frozen=True)
class Reward:
    points: int = 0
    funding_unit: str = ""
    coupon_template: str = ""
    coupon_unit: str = ""
    badge: str = ""


@dataclass(frozen=True)
class ChallengeSpec:
    display_name: str
    unit: str
    goal: Goal
    window: Window
    reward: Reward
    repeatable: bool
    time_zone: str
    start_at: datetime | None
    end_at: datetime | None

    def check(self) -> None:
        bad: list[FieldViolation] = []
        if not self.display_name.strip():
            bad.append(FieldViolation("challenge.display_name", "a name is required"))
        if self.goal.target < 1:
            bad.append(FieldViolation("challenge.goal.target", "at least 1"))
        if self.goal.kind is GoalKind.STREAK and not self.goal.activity_type:
            bad.append(
                FieldViolation("challenge.goal.activity_type", "a streak needs an activity type")
            )
        g = self.goal
        if g.kind is GoalKind.DISTINCT_UNITS and g.units and g.target > len(set(g.units)):
            bad.append(
                FieldViolation("challenge.goal.target", "more units than `goal.units` lists")
            )
        if self.window.kind is WindowKind.ROLLING_DAYS and not 1 <= self.window.days <= 366:
            bad.append(FieldViolation("challenge.window.days", "1 to 366 days"))
        try:
            zone(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            bad.append(FieldViolation("challenge.time_zone", "an IANA time zone"))
        r = self.reward
        if r.points < 0:
            bad.append(FieldViolation("challenge.reward.points", "not negative"))
        if r.points and not r.funding_unit:
            bad.append(FieldViolation("challenge.reward.funding_unit", "points need a funder"))
        if r.badge and not BADGE.match(r.badge):
            bad.append(FieldViolation("challenge.reward.badge", "lower-case letters, digits, -_"))
        if self.unit != GROUP:  # a unit's challenge pays as that unit only
            if r.funding_unit not in ("", self.unit):
                bad.append(FieldViolation("challenge.reward.funding_unit", f"{self.unit} only"))
            if r.coupon_unit not in ("", self.unit):
                bad.append(FieldViolation("challenge.reward.coupon_unit", f"{self.unit} only"))
        if not (r.points or r.coupon_template or r.badge):
            bad.append(FieldViolation("challenge.reward", "points, a coupon or a badge"))
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            bad.append(FieldViolation("challenge.end_time", "after the start time"))
        if bad:
            raise InvalidArgument.of(bad)


@dataclass(frozen=True)
class Occurrence:
    """One member event as challenges read it: a purchase (unit, spend in base currency) or
    an activity (its type)."""

    key: str  # names the event by its content: a replay under another event ID is the same
    member_id: str
    at: datetime
    unit: str = ""
    spend: Decimal = Decimal(0)
    activity_type: str = ""  # empty: a purchase


def counts_for(goal: Goal, event: Occurrence) -> bool:
    if goal.kind is GoalKind.STREAK:
        return event.activity_type == goal.activity_type
    if event.activity_type:
        return False
    if goal.kind is GoalKind.DISTINCT_UNITS:
        return not goal.units or event.unit in goal.units
    return not goal.unit or event.unit == goal.unit


@dataclass(frozen=True)
class Progress:
    """A member's progress in one challenge's period."""

    value: int = 0
    units: frozenset[str] = field(default_factory=frozenset)
    last_day: date | None = None  # a streak's latest day
    spend: Decimal = Decimal(0)  # kept exact; `value` is its whole units

    def count(self, goal: Goal, event: Occurrence, time_zone: str) -> Progress:
        """Progress with the event counted (the caller counts each event once)."""
        match goal.kind:
            case GoalKind.PURCHASES:
                return replace(self, value=self.value + 1)
            case GoalKind.SPEND:
                spend = self.spend + event.spend
                return replace(self, spend=spend, value=int(spend))
            case GoalKind.DISTINCT_UNITS:
                units = self.units | {event.unit}
                return replace(self, units=units, value=len(units))
            case GoalKind.STREAK:
                day = local_day(event.at, time_zone)
                if self.last_day is None or day == self.last_day + timedelta(days=1):
                    return replace(self, value=self.value + 1, last_day=day)
                if day <= self.last_day:
                    return self  # the same day again, or a late event: the streak stands
                return replace(self, value=1, last_day=day)  # a day missed: again from one
        raise ValueError(goal.kind)

    def reached(self, goal: Goal) -> bool:
        return self.value >= goal.target


@dataclass(frozen=True)
class Purchase:
    """A purchase as challenges and leaderboards keep it, with what was refunded of it."""

    key: str
    unit: str
    spend: Decimal
    refunded: Decimal = Decimal(0)
    refunds: int = 0

    @property
    def live(self) -> bool:
        """Whether it still counts: not refunded in full."""
        return not (self.refunds and self.refunded >= self.spend)

    @property
    def net(self) -> Decimal:
        return max(self.spend - self.refunded, Decimal(0)) if self.live else Decimal(0)


def purchase_progress(goal: Goal, purchases: Iterable[Purchase]) -> Progress:
    """A purchase goal's progress from the period's purchases net of their refunds: the same
    as counting each purchase as it came (`Progress.count`) when nothing was refunded."""
    live = [p for p in purchases if p.live]
    match goal.kind:
        case GoalKind.PURCHASES:
            return Progress(value=len(live))
        case GoalKind.SPEND:
            spend = sum((p.net for p in live), Decimal(0))
            return Progress(value=int(spend), spend=spend)
        case GoalKind.DISTINCT_UNITS:
            units = frozenset(p.unit for p in live)
            return Progress(value=len(units), units=units)
    raise ValueError(goal.kind)


def purchase_scores(purchase: Purchase) -> dict[Metric, int]:
    """What a purchase adds to the leaderboards' metrics net of its refunds (the spend of each
    purchase rounded down, as `metric_scores` counts it)."""
    return {Metric.VISITS: int(purchase.live), Metric.SPEND: int(purchase.net)}


def longer_streak(a: Progress, b: Progress) -> Progress:
    """Two members' streaks made one at a merge: the longer stands (days are not added: a
    streak is days in a row of one person, and the two ran side by side)."""
    return b if (b.value, b.last_day or date.min) > (a.value, a.last_day or date.min) else a


def completion_key(repeatable: bool, period: str) -> str:
    """What a completion is unique by, with the member and the challenge: the period for a
    repeatable challenge, "once" otherwise."""
    return period if repeatable else "once"


@dataclass(frozen=True)
class LeaderboardReward:
    rank: int = 0
    threshold: int = 0
    points: int = 0
    funding_unit: str = ""
    coupon_template: str = ""


@dataclass(frozen=True)
class LeaderboardSpec:
    display_name: str
    unit: str
    metric: Metric
    scope_unit: str  # "" group-wide
    period: WindowKind
    rewards: tuple[LeaderboardReward, ...]

    def check(self) -> None:
        bad: list[FieldViolation] = []
        if not self.display_name.strip():
            bad.append(FieldViolation("leaderboard.display_name", "a name is required"))
        if self.period not in (WindowKind.MONTH, WindowKind.QUARTER):
            bad.append(FieldViolation("leaderboard.period", "MONTH or QUARTER"))
        if self.unit != GROUP and self.scope_unit != self.unit:
            bad.append(FieldViolation("leaderboard.scope_unit", f"{self.unit} only"))
        if self.unit != GROUP and any(r.funding_unit not in ("", self.unit) for r in self.rewards):
            bad.append(FieldViolation("leaderboard.rewards", f"funded by {self.unit} only"))
        if self.metric is Metric.REFERRALS and self.scope_unit:
            bad.append(FieldViolation("leaderboard.scope_unit", "referrals are group-wide"))
        for i, r in enumerate(self.rewards):
            path = f"leaderboard.rewards[{i}]"
            if (r.rank > 0) == (r.threshold > 0):
                bad.append(FieldViolation(path, "a rank or a threshold (one of the two)"))
            if r.rank < 0 or r.threshold < 0 or r.points < 0:
                bad.append(FieldViolation(path, "not negative"))
            if not (r.points or r.coupon_template):
                bad.append(FieldViolation(path, "points or a coupon template"))
            if r.points and not r.funding_unit:
                bad.append(FieldViolation(f"{path}.funding_unit", "points need a funder"))
        if bad:
            raise InvalidArgument.of(bad)


def metric_scores(event: Occurrence, referral: bool) -> dict[Metric, int]:
    """What one event adds to each metric (spend in whole base currency units, each purchase's
    rounded down)."""
    if referral:
        return {Metric.REFERRALS: 1}
    if event.activity_type:
        return {}
    return {Metric.VISITS: 1, Metric.SPEND: int(event.spend)}
