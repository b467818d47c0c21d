"""The personalised offers' scoring: cosine co-occurrence, the ranking and its fallbacks, and
the offline evaluation on a history with planted co-usage."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from loyalty_insights.domain.recommendations import (
    OfferKind,
    Reason,
    co_occurrence,
    evaluate,
    popularity,
    precision_at,
    recommend,
    similarities,
    size_of,
)
from loyalty_kit.errors import InvalidArgument

from bench.insights_recs import planted_history

A = (OfferKind.COUPON, "a")
B = (OfferKind.REWARD, "b")
C = (OfferKind.COUPON, "c")
P = (OfferKind.REWARD, "p")


def test_similarity_is_the_cosine_of_the_sets_of_members_who_used_the_offers() -> None:
    histories = {
        "m1": [A, B],
        "m2": [A, B],
        "m3": [A, B, P],
        "m4": [A, P],
        "m5": [P],
        "m6": [P],
        "m7": [P],
    }
    found = similarities(histories)
    assert found[A][B] == pytest.approx(3 / math.sqrt(4 * 3))
    assert found[A][P] == pytest.approx(2 / math.sqrt(4 * 5))
    assert found[B][A] == found[A][B]
    # B and P were used together by one member only: noise, not a pair.
    assert P not in found[B]


def test_an_offer_keeps_its_nearest_others_only() -> None:
    histories = {f"m{i}": [A, B, C] for i in range(3)} | {f"n{i}": [A, B] for i in range(3)}
    assert list(similarities(histories, neighbours=1)[A]) == [B]


def test_candidates_are_scored_by_the_sum_of_their_similarities_to_the_offers_used() -> None:
    similar = {A: {C: 0.5, P: 0.3}, B: {C: 0.1, P: 0.4}}
    found = co_occurrence([A, B], similar, leave_out={A, B})
    assert [(r.offer, round(r.score, 6)) for r in found] == [(P, 0.7), (C, 0.6)]


def test_the_offers_used_and_held_are_never_recommended() -> None:
    similar = {A: {B: 0.9, C: 0.5}}
    found = recommend([A], [B], similar, popular=[(A, 0.9), (B, 0.8), (P, 0.1)])
    assert [r.offer for r in found] == [C, P]


def test_popularity_fills_after_co_occurrence_the_segments_first() -> None:
    found = recommend(
        [A],
        [],
        {A: {B: 0.9}},
        segment_popular=[(B, 0.7), (C, 0.6)],
        popular=[(C, 0.9), (P, 0.5)],
        size=3,
    )
    assert [(r.offer, r.reason) for r in found] == [
        (B, Reason.CO_OCCURRENCE),
        (C, Reason.SEGMENT_POPULARITY),
        (P, Reason.POPULARITY),
    ]
    assert found[1].score == 0.6


def test_a_member_with_no_history_gets_the_popular_offers() -> None:
    found = recommend([], [], {}, popular=[(P, 0.5), (A, 0.2)], size=1)
    assert [(r.offer, r.reason) for r in found] == [(P, Reason.POPULARITY)]


def test_popularity_is_the_share_of_members_with_a_use() -> None:
    assert popularity({"m1": [A, B], "m2": [A], "m3": []}) == [(A, 1.0), (B, 0.5)]


def test_the_list_size_defaults_clamps_and_refuses_negatives() -> None:
    assert (size_of(0), size_of(7), size_of(500)) == (10, 7, 20)
    with pytest.raises(InvalidArgument):
        size_of(-1)


def test_precision_counts_the_relevant_among_the_first_k() -> None:
    assert precision_at(5, [A, B, C], {B, P}) == 0.2


END = datetime(2026, 6, 1, tzinfo=UTC)


def test_the_recommender_beats_popularity_on_a_planted_history() -> None:
    found = evaluate(planted_history(4_000, end=END), END - timedelta(days=73), k=5)
    assert found.members > 1_000
    assert found.recommender > 2 * found.popularity
    assert found.recommender > found.popularity + 0.05


def test_without_planted_structure_the_recommender_has_nothing_to_find() -> None:
    # The control: every use a popular draw, so co-usage is chance and popularity is as good.
    history = planted_history(4_000, end=END, noise=1.0)
    found = evaluate(history, END - timedelta(days=73), k=5)
    assert found.recommender < found.popularity + 0.02
