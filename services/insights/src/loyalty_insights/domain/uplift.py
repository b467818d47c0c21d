"""A journey's uplift: the members it acted on (treatment) against the members its control group
held out, over a window after each member's entry.

Conversion (the share who bought) is compared as two proportions: the difference with the
normal (Wald) 95% interval of a difference of proportions, the ratio with the Katz interval of
a risk ratio. Spend and points per member are compared as two means: the difference with the
Welch (unequal variances) normal interval, the ratio by the delta method on its logarithm.
Groups too small for the normal approximation are flagged (`insufficient`): the figures stand,
the intervals are not to be concluded from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
MIN_MEMBERS = 30  # members in each group
MIN_OUTCOMES = 5  # converted and not converted in each group
DEFAULT_WINDOW_DAYS = 30
MAX_WINDOW_DAYS = 365


def window_days_of(value: int) -> int | None:
    """The request's window in days (0: the default); None when out of range."""
    if value == 0:
        return DEFAULT_WINDOW_DAYS
    return value if 0 < value <= MAX_WINDOW_DAYS else None


@dataclass(frozen=True)
class Sample:
    """A group's sum and sum of squares of one measure over its members (one value a member)."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The unbiased sample variance (0 below two members)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.n * self.mean**2) / (self.n - 1))


@dataclass(frozen=True)
class Group:
    members: int
    converted: int
    open_windows: int
    spend: Sample
    points: Sample

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.members if self.members else 0.0


@dataclass(frozen=True)
class Effect:
    """treatment - control, its 95% interval, and the relative change with its interval (None
    where it is undefined)."""

    absolute: float
    low: float
    high: float
    relative: float | None = None
    relative_low: float | None = None
    relative_high: float | None = None

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def _ratio_interval(ratio: float, se_log: float) -> tuple[float, float]:
    return ratio * math.exp(-Z95 * se_log) - 1, ratio * math.exp(Z95 * se_log) - 1


def proportions(t_converted: int, t_members: int, c_converted: int, c_members: int) -> Effect:
    """The difference of two conversion rates, and their ratio less one."""
    if not t_members or not c_members:
        return Effect(0.0, 0.0, 0.0)
    pt, pc = t_converted / t_members, c_converted / c_members
    diff = pt - pc
    se = math.sqrt(pt * (1 - pt) / t_members + pc * (1 - pc) / c_members)
    relative = low = high = None
    if pc > 0:
        relative = pt / pc - 1
        if t_converted > 0:
            se_log = math.sqrt(1 / t_converted - 1 / t_members + 1 / c_converted - 1 / c_members)
            low, high = _ratio_interval(pt / pc, se_log)
    return Effect(diff, diff - Z95 * se, diff + Z95 * se, relative, low, high)


def means(treatment: Sample, control: Sample) -> Effect:
    """The difference of two means, and their ratio less one."""
    if not treatment.n or not control.n:
        return Effect(0.0, 0.0, 0.0)
    mt, mc = treatment.mean, control.mean
    diff = mt - mc
    se = math.sqrt(treatment.variance / treatment.n + control.variance / control.n)
    relative = low = high = None
    if mc != 0:
        relative = mt / mc - 1
        if mt > 0 and mc > 0:
            se_log = math.sqrt(
                treatment.variance / (treatment.n * mt**2) + control.variance / (control.n * mc**2)
            )
            low, high = _ratio_interval(mt / mc, se_log)
    return Effect(diff, diff - Z95 * se, diff + Z95 * se, relative, low, high)


def insufficient(treatment: Group, control: Group) -> bool:
    """Too few members, or too few converted or not converted, in either group for the
    normal approximation the intervals rest on."""
    for group in (treatment, control):
        if group.members < MIN_MEMBERS:
            return True
        if min(group.converted, group.members - group.converted) < MIN_OUTCOMES:
            return True
    return False


@dataclass(frozen=True)
class JourneyUplift:
    journey_id: str
    window_days: int
    treatment: Group
    control: Group

    @property
    def conversion(self) -> Effect:
        t, c = self.treatment, self.control
        return proportions(t.converted, t.members, c.converted, c.members)

    @property
    def spend(self) -> Effect:
        return means(self.treatment.spend, self.control.spend)

    @property
    def points(self) -> Effect:
        return means(self.treatment.points, self.control.points)

    @property
    def insufficient(self) -> bool:
        return insufficient(self.treatment, self.control)
