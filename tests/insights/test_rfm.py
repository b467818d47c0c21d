"""RFM scoring (the reference the service's SQL is checked against): quintile scores, members
without purchases, the frequency-monetary score and the segment map, on histories whose scores
are known in advance and as properties over any values."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from loyalty_insights.domain import rfm
from loyalty_insights.domain.rfm import (
    SEGMENT_CELLS,
    SEGMENT_RULES,
    MemberActivity,
    Purchase,
    RfmCell,
    RfmSegment,
    activity_in_window,
    frequency_monetary_score,
    quintile_scores,
    rfm_grid,
    score_groups,
    score_members,
    segment_counts,
    segment_of,
)
from loyalty_kit.db import asyncpg_params
from loyalty_kit.settings import Settings
from sqlalchemy.engine import make_url

WINDOW_START, WINDOW_END = date(2025, 7, 1), date(2026, 6, 30)
values = st.lists(st.integers(min_value=-1000, max_value=1000), min_size=1, max_size=200)


def test_ten_distinct_values_fall_two_to_each_quintile() -> None:
    assert quintile_scores([50, 10, 90, 30, 70, 20, 100, 40, 60, 80]) == [
        3, 1, 5, 2, 4, 1, 5, 2, 3, 4,
    ]  # fmt: skip


def test_tied_values_share_the_score_where_their_tie_starts() -> None:
    # Six members with one purchase: all score 1, though they fill three quintiles' places.
    assert quintile_scores([1, 1, 1, 1, 1, 1, 2, 3, 4, 5]) == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]


def test_recency_ranks_the_fewest_days_best() -> None:
    assert quintile_scores([0, 400, 3, 3, 90], higher_is_better=False) == [5, 1, 3, 3, 2]


def test_fewer_than_five_members_leave_some_scores_unused() -> None:
    assert quintile_scores([7]) == [1]
    assert quintile_scores([1, 2, 3]) == [1, 2, 4]


@given(values, st.booleans())
def test_scores_are_one_to_five(xs: list[int], higher_is_better: bool) -> None:
    assert set(quintile_scores(xs, higher_is_better=higher_is_better)) <= {1, 2, 3, 4, 5}


@given(values)
def test_a_score_never_goes_down_as_the_metric_improves(xs: list[int]) -> None:
    """Higher values never score lower (recency: lower days never score lower); equal values
    score the same. Adjacent pairs in value order prove it for every pair."""
    best_high = quintile_scores(xs)
    best_low = quintile_scores(xs, higher_is_better=False)
    ordered = sorted(zip(xs, best_high, best_low, strict=True))
    for (x, high_x, low_x), (y, high_y, low_y) in pairwise(ordered):
        if x < y:
            assert high_x <= high_y and low_x >= low_y
        else:
            assert (high_x, low_x) == (high_y, low_y)


@given(st.sets(st.integers(), min_size=1, max_size=300), st.booleans())
def test_distinct_values_make_quintiles_within_one_of_each_other(
    xs: set[int], higher_is_better: bool
) -> None:
    sizes = Counter(quintile_scores(sorted(xs), higher_is_better=higher_is_better))
    counts = [sizes.get(score, 0) for score in range(1, 6)]
    assert max(counts) - min(counts) <= 1
    assert sum(counts) == len(xs)


@given(st.sets(st.integers(), min_size=1, max_size=300))
def test_distinct_values_match_ntile_five_group_sizes(xs: set[int]) -> None:
    """The same sizes as SQL's ntile(5), only in the other order when they differ."""
    n = len(xs)
    sizes = Counter(quintile_scores(list(xs)))
    ntile = [n // 5 + (1 if bucket < n % 5 else 0) for bucket in range(5)]
    assert sorted(sizes.get(score, 0) for score in range(1, 6)) == sorted(ntile)


def test_frequency_monetary_score_is_the_mean_rounded_half_up() -> None:
    assert frequency_monetary_score(5, 5) == 5
    assert frequency_monetary_score(5, 4) == 5
    assert frequency_monetary_score(4, 4) == 4
    assert frequency_monetary_score(1, 2) == 2
    assert frequency_monetary_score(1, 1) == 1
    with pytest.raises(ValueError):
        frequency_monetary_score(0, 3)


def test_the_segment_map_has_every_cell_once() -> None:
    expanded = [cell for _, boxes in SEGMENT_RULES for box in boxes for cell in box.cells()]
    assert len(expanded) == 25
    assert set(expanded) == {(r, fm) for r in range(1, 6) for fm in range(1, 6)}
    assert [(c.recency_score, c.frequency_monetary_score) for c in SEGMENT_CELLS] == sorted(
        expanded
    )
    assert {c.segment for c in SEGMENT_CELLS} == set(RfmSegment)


@given(st.integers(1, 5), st.integers(1, 5))
def test_every_cell_maps_to_exactly_one_segment(r: int, fm: int) -> None:
    owners = [
        segment for segment, boxes in SEGMENT_RULES for box in boxes if (r, fm) in set(box.cells())
    ]
    assert owners == [segment_of(r, fm)]


def test_the_documented_table_is_the_segment_map() -> None:
    doc = rfm.__doc__ or ""
    names = {s.value.replace("_", " ").replace("cant", "can't"): s for s in RfmSegment}
    rows = [line.strip() for line in doc.splitlines() if re.match(r"\s+[1-5]\s{2,}\w", line)]
    assert len(rows) == 5
    documented = {}
    for row in rows:
        r, *cells = re.split(r"\s{2,}", row)
        assert len(cells) == 5
        for fm, name in enumerate(cells, start=1):
            documented[(int(r), fm)] = names[name]
    assert documented == {
        (c.recency_score, c.frequency_monetary_score): c.segment for c in SEGMENT_CELLS
    }


def test_the_usual_cells() -> None:
    assert segment_of(5, 5) is RfmSegment.CHAMPIONS
    assert segment_of(5, 1) is RfmSegment.NEW
    assert segment_of(1, 5) is RfmSegment.CANT_LOSE
    assert segment_of(2, 4) is RfmSegment.AT_RISK
    assert segment_of(1, 1) is RfmSegment.LOST
    with pytest.raises(ValueError):
        segment_of(6, 1)


def _member(i: int, frequency: int, spend: int, days_ago: int | None) -> MemberActivity:
    last = None if days_ago is None else WINDOW_END - timedelta(days=days_ago)
    return MemberActivity(f"m-{i}", frequency, Decimal(spend), last)


def test_a_known_window_scores_and_segments_as_expected() -> None:
    # Ten buying members: member i bought i+1 times for 100 * (i+1), last 10 * (9 - i) days ago,
    # so each metric's quintiles are two members each and member i scores i // 2 + 1 on all.
    members = [_member(i, i + 1, 100 * (i + 1), 10 * (9 - i)) for i in range(10)]
    members.append(_member(10, 0, 0, None))
    scored = {s.member_id: s for s in score_members(members, WINDOW_END)}
    for i in range(10):
        s = scored[f"m-{i}"]
        assert (s.recency_score, s.frequency_score, s.monetary_score) == (i // 2 + 1,) * 3
    assert scored["m-9"].segment is RfmSegment.CHAMPIONS and scored["m-9"].recency_days == 0
    assert scored["m-5"].segment is RfmSegment.NEED_ATTENTION
    assert scored["m-3"].segment is RfmSegment.HIBERNATING
    assert scored["m-0"].segment is RfmSegment.LOST
    quiet = scored["m-10"]
    assert (quiet.recency_days, quiet.recency_score, quiet.frequency_score) == (None, 1, 1)
    assert quiet.monetary_score == 1 and quiet.segment is RfmSegment.LOST


def test_a_big_spender_who_stopped_coming_cannot_be_lost() -> None:
    members = [_member(i, 1, 50, i) for i in range(8)]  # recent, once, little
    members += [_member(8, 40, 90_000, 300), _member(9, 35, 80_000, 280)]
    scored = {s.member_id: s for s in score_members(members, WINDOW_END)}
    assert scored["m-8"].segment is RfmSegment.CANT_LOSE
    assert scored["m-0"].segment is RfmSegment.NEW


activity = st.tuples(st.integers(0, 30), st.integers(0, 10_000), st.integers(0, 364)).map(
    lambda t: (t[0], t[1] if t[0] else 0, t[2] if t[0] else None)
)


@given(st.lists(activity, min_size=1, max_size=60), st.integers(1, 40))
def test_members_without_purchases_change_no_one_elses_scores(
    rows: list[tuple[int, int, int | None]], quiet: int
) -> None:
    members = [_member(i, f, m, d) for i, (f, m, d) in enumerate(rows)]
    extra = [_member(1000 + i, 0, 0, None) for i in range(quiet)]
    alone = score_members(members, WINDOW_END)
    together = score_members(members + extra, WINDOW_END)
    assert together[: len(members)] == alone
    assert all(s.segment is RfmSegment.LOST for s in together[len(members) :])


def test_the_grid_holds_each_member_in_its_recency_and_frequency_cell() -> None:
    members = [_member(i, i + 1, 100 * (i + 1), 10 * (9 - i)) for i in range(10)]
    members.append(_member(10, 0, 0, None))
    grid = rfm_grid(score_groups(score_members(members, WINDOW_END)))
    assert [(c.recency_score, c.frequency_score) for c in grid] == [
        (r, f) for r in range(1, 6) for f in range(1, 6)
    ]
    filled = {(c.recency_score, c.frequency_score): c for c in grid if c.members}
    # Members 2i and 2i+1 score i+1 on all three; the quiet member joins the first two in (1, 1).
    assert set(filled) == {(k, k) for k in range(1, 6)}
    assert filled[(1, 1)].members == 3
    assert filled[(1, 1)].average_monetary == Decimal(300) / 3
    assert (filled[(5, 5)].members, filled[(5, 5)].average_monetary) == (2, Decimal(950))
    empty = next(c for c in grid if not c.members)
    assert (empty.monetary, empty.average_monetary) == (Decimal(0), Decimal(0))


@given(st.lists(activity, min_size=1, max_size=60))
def test_the_grid_and_the_segments_count_the_same_members(
    rows: list[tuple[int, int, int | None]],
) -> None:
    scored = score_members([_member(i, f, m, d) for i, (f, m, d) in enumerate(rows)], WINDOW_END)
    groups = score_groups(scored)
    grid = rfm_grid(groups)
    assert len(grid) == 25
    assert sum(c.members for c in grid) == len(scored) == sum(segment_counts(groups).values())
    assert sum(c.monetary for c in grid) == sum(s.monetary for s in scored)
    assert segment_counts(groups) == {
        segment: sum(1 for s in scored if s.segment is segment) for segment in RfmSegment
    }
    for cell in grid:
        inside = [
            s
            for s in scored
            if (s.recency_score, s.frequency_score) == (cell.recency_score, cell.frequency_score)
        ]
        assert cell.members == len(inside)
        assert cell.monetary == sum((s.monetary for s in inside), Decimal(0))
    # Cells summed again (the table's rows grouped by R and F) make the same grid.
    assert rfm_grid(grid) == grid


def test_a_grid_cell_outside_the_scores_is_refused() -> None:
    with pytest.raises(ValueError, match=r"1\.\.5"):
        rfm_grid([RfmCell(0, 3, 1, Decimal(1))])


def test_activity_in_window_counts_both_ends_and_nothing_outside() -> None:
    purchases = [
        Purchase("ann", WINDOW_START, Decimal("10.50")),
        Purchase("ann", WINDOW_END, Decimal("20")),
        Purchase("ann", WINDOW_END + timedelta(days=1), Decimal("999")),
        Purchase("bob", WINDOW_START - timedelta(days=1), Decimal("999")),
        Purchase("eve", WINDOW_START, Decimal("5")),  # not one of the members asked about
    ]
    ann, bob = activity_in_window(purchases, ["ann", "bob"], WINDOW_START, WINDOW_END)
    assert ann == MemberActivity("ann", 2, Decimal("30.50"), WINDOW_END)
    assert bob == MemberActivity("bob", 0, Decimal(0), None)


def test_inconsistent_activity_is_refused() -> None:
    with pytest.raises(ValueError):
        MemberActivity("ann", 2, Decimal(1), None)
    with pytest.raises(ValueError):
        MemberActivity("ann", 0, Decimal(0), WINDOW_END)
    with pytest.raises(ValueError):
        score_members([_member(1, 1, 1, 0), _member(1, 2, 2, 0)], WINDOW_END)
    with pytest.raises(ValueError):
        score_members([_member(1, 1, 1, -1)], WINDOW_END)


SCORED_IN_SQL = """
WITH activity AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::numeric[], $4::int[])
        AS a(member_id, frequency, monetary, recency_days)
), ranked AS (
    SELECT member_id,
           1 + (5 * (rank() OVER (ORDER BY recency_days DESC) - 1)) / count(*) OVER () AS r,
           1 + (5 * (rank() OVER (ORDER BY frequency) - 1)) / count(*) OVER () AS f,
           1 + (5 * (rank() OVER (ORDER BY monetary) - 1)) / count(*) OVER () AS m
    FROM activity
)
SELECT ranked.member_id, ranked.r, ranked.f, ranked.m, segment_map.segment
FROM ranked
JOIN unnest($5::int[], $6::int[], $7::text[]) AS segment_map(r, fm, segment)
  ON segment_map.r = ranked.r AND segment_map.fm = (ranked.f + ranked.m + 1) / 2
"""


@pytest.mark.parametrize("seed", range(4))
async def test_the_documented_sql_scores_and_segments_as_the_reference(
    settings: Settings, seed: int
) -> None:
    """The module's SQL formulas and its segment cells, run by PostgreSQL over members with
    many ties (few distinct values) or none, give the reference's scores and segments."""
    rng = random.Random(seed)
    spread = 10 if seed % 2 else 1_000_000
    members = [
        _member(
            i, rng.randint(1, spread), rng.randint(1, spread), rng.randint(0, min(spread, 100_000))
        )
        for i in range(rng.randint(1, 400))
    ]
    expected = {
        s.member_id: (s.recency_score, s.frequency_score, s.monetary_score, s.segment.value)
        for s in score_members(members, WINDOW_END)
    }
    conn = await asyncpg.connect(**asyncpg_params(make_url(settings.database_url)))
    try:
        rows = await conn.fetch(
            SCORED_IN_SQL,
            [a.member_id for a in members],
            [a.frequency for a in members],
            [a.monetary for a in members],
            [(WINDOW_END - a.last_purchase_on).days for a in members if a.last_purchase_on],
            [c.recency_score for c in SEGMENT_CELLS],
            [c.frequency_monetary_score for c in SEGMENT_CELLS],
            [c.segment.value for c in SEGMENT_CELLS],
        )
    finally:
        await conn.close()
    assert {row["member_id"]: (row["r"], row["f"], row["m"], row["segment"]) for row in rows} == (
        expected
    )
