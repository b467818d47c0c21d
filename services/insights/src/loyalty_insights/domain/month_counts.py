"""What one member adds to the stored month-by-month counts of the cohorts and the programme's
health (adapters/month_counts.py keeps them): a function of the member's stored rows, so an
event's recompute moves the counts by the difference between the rows before and after it.

A member's rows: its months of activity by unit (`MemberMonth`, unit '' for any unit: the
group's row) and its first registration by unit (`MemberJoin`, unit '' for its first anywhere;
`first` marks the unit it first joined at, and the group's row)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# A counter of `month_counts`: (month, unit, column); of `cohort_counts`: (cohort, month, unit).
MonthKey = tuple[str, str, str]
CohortKey = tuple[str, str, str]

MONTH_COLUMNS = ("active", "redeeming", "unregistered", "registered", "joined", "imported")


@dataclass(frozen=True)
class MemberMonth:
    month: str  # "YYYY-MM", UTC
    unit: str  # '' for the group
    redeemed: bool


@dataclass(frozen=True)
class MemberJoin:
    unit: str  # '' for the group
    month: str  # of the member's first registration at the unit
    imported: bool
    first: bool  # the unit of the member's first registration (and the group's row)


@dataclass(frozen=True)
class Contribution:
    months: Counter[MonthKey]
    cohorts: Counter[CohortKey]


def contribution(months: Iterable[MemberMonth], joins: Iterable[MemberJoin]) -> Contribution:
    """One member's counts: registered in the month it first registered at each unit (group:
    anywhere); joined (and imported) in its cohort's month at the unit it first joined at and
    the group's; active and redeeming in each month of activity at each unit; active while not
    registered there by the month's end; and in its cohort's retention from its cohort's month
    on, at the unit it first joined at (for activity there) and the group's."""
    by_unit = {j.unit: j for j in joins}
    counts: Counter[MonthKey] = Counter()
    cohorts: Counter[CohortKey] = Counter()
    for j in by_unit.values():
        counts[j.month, j.unit, "registered"] += 1
        if j.first:
            counts[j.month, j.unit, "joined"] += 1
            if j.imported:
                counts[j.month, j.unit, "imported"] += 1
    for m in months:
        counts[m.month, m.unit, "active"] += 1
        if m.redeemed:
            counts[m.month, m.unit, "redeeming"] += 1
        joined = by_unit.get(m.unit)
        if joined is None or joined.month > m.month:
            counts[m.month, m.unit, "unregistered"] += 1
        if joined is not None and joined.first and m.month >= joined.month:
            cohorts[joined.month, m.month, m.unit] += 1
    return Contribution(counts, cohorts)


def difference(before: Contribution, after: Contribution) -> Contribution:
    """What moving from `before` to `after` adds to each counter (negative: takes away); the
    counters it leaves alone left out."""
    months: Counter[MonthKey] = Counter()
    cohorts: Counter[CohortKey] = Counter()
    for key in before.months.keys() | after.months.keys():
        if n := after.months[key] - before.months[key]:
            months[key] = n
    for key in before.cohorts.keys() | after.cohorts.keys():
        if n := after.cohorts[key] - before.cohorts[key]:
            cohorts[key] = n
    return Contribution(months, cohorts)
