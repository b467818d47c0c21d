"""Members' figures kept as a table: the standard window they cover, and how a member recomputed
between two full refreshes is scored against the last refresh's quintile cut points.

A full refresh scores every member by rank (domain/rfm.py); a score's **cut point** is the worst
value that still earned it (for scores 2..5: the least frequency or monetary, the most recency
days; None where no member scored that high). Scores never go down as a metric improves, so
scoring a value against the cut points (`1 +` the number of cut points it reaches) gives every
member of that refresh exactly its score, and a member recomputed later the score its value
would have earned then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from loyalty_insights.domain.rfm import RfmScore


def year_before(end: datetime) -> datetime:
    """The start of the trailing 12 months that end at `end`: the same moment a year earlier
    (UTC; 29 February falls back to the 28th, as PostgreSQL's `- interval '12 months'`)."""
    end = end.astimezone(UTC)
    try:
        return end.replace(year=end.year - 1)
    except ValueError:
        return end.replace(year=end.year - 1, day=28)


@dataclass(frozen=True)
class CutPoints:
    """Per metric, the worst value that earned scores 2, 3, 4 and 5 (None: nobody did)."""

    recency: tuple[int | None, ...]  # most days since the last purchase
    frequency: tuple[int | None, ...]  # fewest purchases
    monetary: tuple[Decimal | None, ...]  # least spend

    @classmethod
    def of(cls, scores: Sequence[RfmScore]) -> CutPoints:
        """The cut points of a refresh's scores (members without a purchase left out)."""
        ranked = [s for s in scores if s.frequency > 0 and s.recency_days is not None]
        worst_days = [
            max(
                (
                    s.recency_days
                    for s in ranked
                    if s.recency_score >= k and s.recency_days is not None
                ),
                default=None,
            )
            for k in range(2, 6)
        ]
        fewest = [
            min((s.frequency for s in ranked if s.frequency_score >= k), default=None)
            for k in range(2, 6)
        ]
        least = [
            min((s.monetary for s in ranked if s.monetary_score >= k), default=None)
            for k in range(2, 6)
        ]
        return cls(tuple(worst_days), tuple(fewest), tuple(least))

    def scores(
        self, recency_days: int | None, frequency: int, monetary: Decimal
    ) -> tuple[int, int, int]:
        """(R, F, M) of a member's figures against these cut points; 1, 1, 1 without a
        purchase."""
        if frequency == 0 or recency_days is None:
            return 1, 1, 1
        r = 1 + sum(1 for c in self.recency if c is not None and recency_days <= c)
        f = 1 + sum(1 for c in self.frequency if c is not None and frequency >= c)
        m = 1 + sum(1 for c in self.monetary if c is not None and monetary >= c)
        return r, f, m
