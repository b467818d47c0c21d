"""RFM: recency, frequency and monetary value per member over a window, each scored 1-5 by
quintile, and the named segment of each (recency score, frequency-monetary score) cell.

This module is the reference: the service computes the same figures in SQL over a million
members, and tests compare the two. Everything the SQL needs is written here as data or as a
formula that window functions compute directly.

The metrics, for a window `[start, end]` and a member:
- **frequency**: the member's purchases in the window;
- **monetary**: the member's spend in the window (in the base currency);
- **recency**: whole days from the member's last purchase in the window to the window's end
  (0 for a purchase on the last day).

Scoring. Only members with at least one purchase in the window are *ranked*; among these `n`
members a metric's score is

    score = 1 + (5 * (rank - 1)) div n

where `rank` is 1 + the number of ranked members with a strictly worse value (SQL: `rank()
OVER (ORDER BY value)`, ascending for frequency and monetary, descending for recency days, so
that the most recent purchase scores highest) and `div` is integer division. So:
- scores are 1..5, and never go down as the metric improves;
- tied members share a score: the score of the position where their tie starts (the lower one);
- with distinct values the five score groups differ in size by at most one (`ntile(5)` spreads
  sizes the same way but may split a tie, which we do not);
- with fewer than five ranked members some scores are unused.

In SQL over the window's members with a purchase (integer division on bigints; a `PARTITION
BY unit` in both windows gives each unit's own scores):

    1 + (5 * (rank() OVER (ORDER BY frequency) - 1)) / count(*) OVER ()      -- F
    1 + (5 * (rank() OVER (ORDER BY monetary) - 1)) / count(*) OVER ()       -- M
    1 + (5 * (rank() OVER (ORDER BY recency_days DESC) - 1)) / count(*) OVER ()  -- R

Members without a purchase in the window (registered before its end) are not ranked: zeros in
the ranking would fill the low quintiles with one tie and squeeze every active member into the
top ones. They score R = F = M = 1 and so fall in the **lost** segment.

The frequency-monetary score is the mean of F and M rounded half up, `(F + M + 1) div 2`, so a
member needs both to be high for a high FM. The segments are the usual ones laid on the 5 x 5
grid of (R, FM), each cell in exactly one segment (`SEGMENT_CELLS`, 25 rows the SQL joins on):

    R \\ FM  1               2                    3                    4        5
    5       new             potential loyalists  potential loyalists  loyal    champions
    4       promising       potential loyalists  potential loyalists  loyal    loyal
    3       about to sleep  about to sleep       need attention       loyal    loyal
    2       hibernating     hibernating          at risk              at risk  can't lose
    1       lost            hibernating          at risk              at risk  can't lose

Champions bought most recently with FM 5 (F and M both 4-5, at least one 5); members who were
worth much and have not come back for long are at risk, the most valuable of them "can't lose".
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparisonT

SCORES = range(1, 6)
"""The scores a metric takes: 1 (worst quintile) to 5 (best)."""


class RfmSegment(StrEnum):
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALISTS = "potential_loyalists"
    NEW = "new"
    PROMISING = "promising"
    NEED_ATTENTION = "need_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANT_LOSE = "cant_lose"
    HIBERNATING = "hibernating"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class ScoreBox:
    """The cells with recency score in `recency` and frequency-monetary score in
    `frequency_monetary` (both inclusive ranges written `(low, high)`)."""

    recency: tuple[int, int]
    frequency_monetary: tuple[int, int]

    def cells(self) -> Iterable[tuple[int, int]]:
        for r in range(self.recency[0], self.recency[1] + 1):
            for fm in range(self.frequency_monetary[0], self.frequency_monetary[1] + 1):
                yield r, fm


SEGMENT_RULES: tuple[tuple[RfmSegment, tuple[ScoreBox, ...]], ...] = (
    (RfmSegment.CHAMPIONS, (ScoreBox((5, 5), (5, 5)),)),
    (RfmSegment.LOYAL, (ScoreBox((3, 5), (4, 4)), ScoreBox((3, 4), (5, 5)))),
    (RfmSegment.POTENTIAL_LOYALISTS, (ScoreBox((4, 5), (2, 3)),)),
    (RfmSegment.NEW, (ScoreBox((5, 5), (1, 1)),)),
    (RfmSegment.PROMISING, (ScoreBox((4, 4), (1, 1)),)),
    (RfmSegment.NEED_ATTENTION, (ScoreBox((3, 3), (3, 3)),)),
    (RfmSegment.ABOUT_TO_SLEEP, (ScoreBox((3, 3), (1, 2)),)),
    (RfmSegment.AT_RISK, (ScoreBox((1, 2), (3, 4)),)),
    (RfmSegment.CANT_LOSE, (ScoreBox((1, 2), (5, 5)),)),
    (RfmSegment.HIBERNATING, (ScoreBox((2, 2), (1, 2)), ScoreBox((1, 1), (2, 2)))),
    (RfmSegment.LOST, (ScoreBox((1, 1), (1, 1)),)),
)
"""Each segment as the score ranges it covers (the table in the module docstring)."""


@dataclass(frozen=True, slots=True)
class SegmentCell:
    """One row of the segment map: the SQL joins scored members on (r, fm) to name them."""

    recency_score: int
    frequency_monetary_score: int
    segment: RfmSegment


def _segment_cells() -> tuple[SegmentCell, ...]:
    cells = [
        SegmentCell(r, fm, segment)
        for segment, boxes in SEGMENT_RULES
        for box in boxes
        for r, fm in box.cells()
    ]
    return tuple(sorted(cells, key=lambda c: (c.recency_score, c.frequency_monetary_score)))


SEGMENT_CELLS: tuple[SegmentCell, ...] = _segment_cells()
"""The segment map as 25 rows (r, fm, segment), ordered by r then fm."""

_SEGMENT_OF: dict[tuple[int, int], RfmSegment] = {
    (c.recency_score, c.frequency_monetary_score): c.segment for c in SEGMENT_CELLS
}


def frequency_monetary_score(frequency_score: int, monetary_score: int) -> int:
    """The mean of F and M rounded half up: `(F + M + 1) div 2`."""
    _check_score(frequency_score)
    _check_score(monetary_score)
    return (frequency_score + monetary_score + 1) // 2


def segment_of(recency_score: int, frequency_monetary_score: int) -> RfmSegment:
    """The named segment of a (recency score, frequency-monetary score) cell."""
    _check_score(recency_score)
    _check_score(frequency_monetary_score)
    return _SEGMENT_OF[(recency_score, frequency_monetary_score)]


def _check_score(score: int) -> None:
    if score not in SCORES:
        raise ValueError(f"an RFM score is 1..5, not {score}")


def quintile_scores(
    values: Sequence[SupportsRichComparisonT], *, higher_is_better: bool = True
) -> list[int]:
    """Each value's score 1..5 among `values`: `1 + (5 * (rank - 1)) div n`, where `rank - 1` is
    the number of strictly worse values (SQL's `rank()`), so ties share the lower score.
    `higher_is_better=False` ranks the smallest values best (recency in days)."""
    n = len(values)
    ascending = sorted(values)

    def worse_than(value: SupportsRichComparisonT) -> int:
        if higher_is_better:
            return bisect_left(ascending, value)
        return n - bisect_right(ascending, value)

    return [1 + (5 * worse_than(v)) // n for v in values]


@dataclass(frozen=True, slots=True)
class MemberActivity:
    """A member's purchases in the window: none (`last_purchase_on` None, frequency 0) or some."""

    member_id: str
    frequency: int
    monetary: Decimal
    last_purchase_on: date | None

    def __post_init__(self) -> None:
        if self.frequency < 0:
            raise ValueError(f"member {self.member_id}: frequency {self.frequency} < 0")
        if (self.frequency == 0) != (self.last_purchase_on is None):
            raise ValueError(
                f"member {self.member_id}: a last purchase date goes with purchases, and only"
            )


@dataclass(frozen=True, slots=True)
class Purchase:
    member_id: str
    on: date
    amount: Decimal


@dataclass(frozen=True, slots=True)
class RfmScore:
    member_id: str
    recency_days: int | None
    """Days from the last purchase in the window to its end; None without a purchase."""
    frequency: int
    monetary: Decimal
    recency_score: int
    frequency_score: int
    monetary_score: int

    @property
    def frequency_monetary_score(self) -> int:
        return frequency_monetary_score(self.frequency_score, self.monetary_score)

    @property
    def segment(self) -> RfmSegment:
        return segment_of(self.recency_score, self.frequency_monetary_score)


def activity_in_window(
    purchases: Iterable[Purchase], members: Iterable[str], start: date, end: date
) -> list[MemberActivity]:
    """Each of `members`' purchases in `[start, end]` (both days included) summed up; members
    without a purchase there get frequency 0."""
    if end < start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    counts: dict[str, int] = {m: 0 for m in members}
    spend: dict[str, Decimal] = dict.fromkeys(counts, Decimal(0))
    last: dict[str, date] = {}
    for purchase in purchases:
        m = purchase.member_id
        if m not in counts or not start <= purchase.on <= end:
            continue
        counts[m] += 1
        spend[m] += purchase.amount
        if m not in last or last[m] < purchase.on:
            last[m] = purchase.on
    return [MemberActivity(m, counts[m], spend[m], last.get(m)) for m in counts]


def score_members(activities: Iterable[MemberActivity], window_end: date) -> list[RfmScore]:
    """Every member's R, F and M scores over a window ending on `window_end`, in the order
    given. Members with purchases are ranked among themselves; the others score 1, 1, 1."""
    members = list(activities)
    if len({a.member_id for a in members}) != len(members):
        raise ValueError("a member appears twice in the window's activity")
    active = [a for a in members if a.last_purchase_on is not None]
    recency = {
        a.member_id: (window_end - a.last_purchase_on).days
        for a in active
        if a.last_purchase_on is not None
    }
    if any(days < 0 for days in recency.values()):
        raise ValueError(f"a last purchase falls after the window's end ({window_end})")
    r_scores = quintile_scores([recency[a.member_id] for a in active], higher_is_better=False)
    f_scores = quintile_scores([a.frequency for a in active])
    m_scores = quintile_scores([a.monetary for a in active])
    scores = {
        a.member_id: (r, f, m)
        for a, r, f, m in zip(active, r_scores, f_scores, m_scores, strict=True)
    }
    return [
        _scored(a, recency.get(a.member_id), *scores.get(a.member_id, (1, 1, 1))) for a in members
    ]


def _scored(activity: MemberActivity, recency_days: int | None, r: int, f: int, m: int) -> RfmScore:
    return RfmScore(
        member_id=activity.member_id,
        recency_days=recency_days,
        frequency=activity.frequency,
        monetary=activity.monetary,
        recency_score=r,
        frequency_score=f,
        monetary_score=m,
    )


@dataclass(frozen=True, slots=True)
class ScoreGroup:
    """Members sharing their three scores: how many, and their monetary values summed."""

    recency_score: int
    frequency_score: int
    monetary_score: int
    members: int
    monetary: Decimal

    @property
    def segment(self) -> RfmSegment:
        return segment_of(
            self.recency_score,
            frequency_monetary_score(self.frequency_score, self.monetary_score),
        )


@dataclass(frozen=True, slots=True)
class RfmCell:
    """One cell of the recency x frequency grid: its members and their monetary values
    summed."""

    recency_score: int
    frequency_score: int
    members: int = 0
    monetary: Decimal = Decimal(0)

    @property
    def average_monetary(self) -> Decimal:
        """The members' mean monetary value; zero for an empty cell."""
        return self.monetary / self.members if self.members else Decimal(0)


def score_groups(scores: Iterable[RfmScore]) -> list[ScoreGroup]:
    """Scored members grouped by their (R, F, M) scores, as the service's SQL groups them."""
    groups: dict[tuple[int, int, int], tuple[int, Decimal]] = {}
    for s in scores:
        key = (s.recency_score, s.frequency_score, s.monetary_score)
        members, monetary = groups.get(key, (0, Decimal(0)))
        groups[key] = (members + 1, monetary + s.monetary)
    return [ScoreGroup(*key, n, total) for key, (n, total) in sorted(groups.items())]


def segment_counts(groups: Iterable[ScoreGroup]) -> dict[RfmSegment, int]:
    """Members in each named segment, zeros included, in the segments' order."""
    counts = dict.fromkeys(RfmSegment, 0)
    for g in groups:
        counts[g.segment] += g.members
    return counts


def rfm_grid(cells: Iterable[RfmCell | ScoreGroup]) -> list[RfmCell]:
    """The 5 x 5 grid of (recency score, frequency score): the given cells or score groups
    summed into it, all 25 cells (zeros included), by recency score then frequency score."""
    members: dict[tuple[int, int], int] = {}
    monetary: dict[tuple[int, int], Decimal] = {}
    for c in cells:
        _check_score(c.recency_score)
        _check_score(c.frequency_score)
        key = (c.recency_score, c.frequency_score)
        members[key] = members.get(key, 0) + c.members
        monetary[key] = monetary.get(key, Decimal(0)) + c.monetary
    return [
        RfmCell(r, f, members.get((r, f), 0), monetary.get((r, f), Decimal(0)))
        for r in SCORES
        for f in SCORES
    ]
