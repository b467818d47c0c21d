"""The members' figures' pure rules: the trailing year's start, and scoring a member against a
full refresh's cut points gives every member of that refresh its ranked score."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from loyalty_insights.domain.figures import CutPoints, year_before
from loyalty_insights.domain.rfm import MemberActivity, score_members


def test_the_trailing_year_starts_the_same_moment_a_year_earlier() -> None:
    end = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert year_before(end) == datetime(2025, 11, 30, 8, 0, tzinfo=UTC)
    assert year_before(datetime(2028, 2, 29, 12, tzinfo=UTC)) == datetime(
        2027, 2, 28, 12, tzinfo=UTC
    )


def test_without_a_purchase_a_member_scores_one_whatever_the_cut_points() -> None:
    cuts = CutPoints((30, 20, 10, 0), (2, 3, 4, 5), tuple(Decimal(v) for v in (1, 2, 3, 4)))
    assert cuts.scores(None, 0, Decimal(0)) == (1, 1, 1)
    assert cuts.scores(0, 9, Decimal(9)) == (5, 5, 5)
    assert cuts.scores(25, 2, Decimal("2.5")) == (2, 2, 3)


def test_unused_scores_are_never_given() -> None:
    """Two ranked members: scores 1 and 3 only; nobody reaches a cut point of None."""
    cuts = CutPoints((10, 10, None, None), (3, 3, None, None), (None, None, None, None))
    assert cuts.scores(5, 4, Decimal(100)) == (3, 3, 1)


activities = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),  # purchases
        st.integers(min_value=-50, max_value=400),  # spend
        st.integers(min_value=0, max_value=40),  # days before the window's end
    ),
    min_size=1,
    max_size=60,
)


@settings(deadline=None)
@given(activities)
def test_cut_points_give_each_member_of_the_refresh_its_ranked_scores(
    rows: list[tuple[int, int, int]],
) -> None:
    end = date(2026, 6, 30)
    scores = score_members(
        [
            MemberActivity(
                f"m{i}",
                frequency,
                Decimal(spend),
                end - timedelta(days=days) if frequency else None,
            )
            for i, (frequency, spend, days) in enumerate(rows)
        ],
        end,
    )
    cuts = CutPoints.of(scores)
    for s in scores:
        expected = (s.recency_score, s.frequency_score, s.monetary_score)
        assert cuts.scores(s.recency_days, s.frequency, s.monetary) == expected
