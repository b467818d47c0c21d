"""Personalised offers: rewards and coupon templates ranked for a member from its history.

Item-to-item co-occurrence: two offers are similar by the cosine of the sets of members who
used them (|A and B| / sqrt(|A| |B|)), so an offer everyone uses is not similar to everything.
A member's candidates are the neighbours of the offers it used, each scored by the sum of its
similarities to them; offers the member used or holds are left out. Short of enough, the
popular offers of the member's RFM segment follow, then the group's (or the unit's).

`similarities` and `recommend` here are the reference: the service computes the table in SQL
at each refresh (`adapters/offers.py`) and ranks with `recommend` from the rows of the
member's offers only; `evaluate` is the offline evaluation (a time split) the tests and
`bench/insights_recs.py` run.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from loyalty_kit.errors import FieldViolation, InvalidArgument


class OfferKind(StrEnum):
    REWARD = "reward"
    COUPON = "coupon"


# (kind, code): a reward and a coupon template may share a code.
Offer = tuple[OfferKind, str]


class Reason(StrEnum):
    CO_OCCURRENCE = "co_occurrence"
    SEGMENT_POPULARITY = "segment_popularity"
    POPULARITY = "popularity"


class Withheld(StrEnum):
    CONSENT_WITHDRAWN = "consent_withdrawn"
    MEMBER_ERASED = "member_erased"


@dataclass(frozen=True)
class Recommendation:
    offer: Offer
    reason: Reason
    score: float


DEFAULT_SIZE = 10
MAX_SIZE = 20
NEIGHBOURS = 50  # each offer's nearest others kept (the table's rows per offer)
MIN_CO_MEMBERS = 2  # a pair one member used together is noise, not a pattern


def size_of(page_size: int) -> int:
    """0: the default; above the maximum: the maximum; negative: INVALID_ARGUMENT."""
    if page_size < 0:
        raise InvalidArgument.of([FieldViolation("page_size", "must not be negative")])
    return min(page_size or DEFAULT_SIZE, MAX_SIZE)


Similar = Mapping[Offer, Mapping[Offer, float]]


def similarities(
    histories: Mapping[str, Iterable[Offer]],
    *,
    neighbours: int = NEIGHBOURS,
    min_co_members: int = MIN_CO_MEMBERS,
) -> dict[Offer, dict[Offer, float]]:
    """Each offer's nearest others by cosine over the members who used them (members ->
    offers used), at most `neighbours` each (ties by offer), pairs used together by fewer than
    `min_co_members` members left out."""
    users: Counter[Offer] = Counter()
    together: Counter[tuple[Offer, Offer]] = Counter()
    for offers in histories.values():
        used = sorted(set(offers))
        users.update(used)
        for i, a in enumerate(used):
            for b in used[i + 1 :]:
                together[(a, b)] += 1
    scored: dict[Offer, list[tuple[float, Offer]]] = defaultdict(list)
    for (a, b), co in together.items():
        if co < min_co_members:
            continue
        score = co / math.sqrt(users[a] * users[b])
        scored[a].append((score, b))
        scored[b].append((score, a))
    nearest: dict[Offer, dict[Offer, float]] = {}
    for offer, found in scored.items():
        found.sort(key=lambda s: (-s[0], s[1]))
        nearest[offer] = {other: score for score, other in found[:neighbours]}
    return nearest


def co_occurrence(
    used: Iterable[Offer],
    similar: Similar,
    *,
    leave_out: set[Offer],
    allowed: Callable[[Offer], bool] = lambda _: True,
) -> list[Recommendation]:
    """The neighbours of the offers used, scored by the sum of their similarities to them,
    best first (ties by offer); `leave_out` and offers not `allowed` are not candidates."""
    scores: dict[Offer, float] = defaultdict(float)
    for offer in set(used):
        for other, score in similar.get(offer, {}).items():
            if other not in leave_out and allowed(other):
                scores[other] += score
    ranked = sorted(scores.items(), key=lambda s: (-s[1], s[0]))
    return [Recommendation(offer, Reason.CO_OCCURRENCE, score) for offer, score in ranked]


def recommend(
    used: Iterable[Offer],
    held: Iterable[Offer],
    similar: Similar,
    *,
    segment_popular: Sequence[tuple[Offer, float]] = (),
    popular: Sequence[tuple[Offer, float]] = (),
    size: int = DEFAULT_SIZE,
    allowed: Callable[[Offer], bool] = lambda _: True,
) -> list[Recommendation]:
    """At most `size` offers: by co-occurrence with the offers used, then the segment's popular
    (offer, share) best first, then the popular ones; never an offer used or held, never one
    twice."""
    used = set(used)
    taken = used | set(held)
    found = co_occurrence(used, similar, leave_out=taken, allowed=allowed)[:size]
    taken |= {r.offer for r in found}
    for reason, ranked in (
        (Reason.SEGMENT_POPULARITY, segment_popular),
        (Reason.POPULARITY, popular),
    ):
        for offer, share in ranked:
            if len(found) >= size:
                return found
            if offer not in taken and allowed(offer):
                found.append(Recommendation(offer, reason, share))
                taken.add(offer)
    return found


def popularity(
    histories: Mapping[str, Iterable[Offer]], members: Iterable[str] | None = None
) -> list[tuple[Offer, float]]:
    """Offers by the share of the members (of `members`, else all) who used any that used
    them, best first (ties by offer)."""
    chosen = histories if members is None else {m: histories.get(m, ()) for m in members}
    users: Counter[Offer] = Counter()
    active = 0
    for offers in chosen.values():
        distinct = set(offers)
        users.update(distinct)
        active += bool(distinct)
    return sorted(((offer, n / active) for offer, n in users.items()), key=lambda s: (-s[1], s[0]))


@dataclass(frozen=True)
class Use:
    member_id: str
    offer: Offer
    at: datetime


@dataclass
class Evaluation:
    """Precision@k of the recommender and of the popularity baseline over the members with a
    history before the split and a new offer used after it."""

    k: int
    members: int = 0
    recommender: float = 0.0
    popularity: float = 0.0
    by_reason: dict[str, int] = field(default_factory=dict)


def precision_at(k: int, recommended: Sequence[Offer], relevant: set[Offer]) -> float:
    return sum(1 for offer in recommended[:k] if offer in relevant) / k


def evaluate(uses: Iterable[Use], split: datetime, k: int = 5) -> Evaluation:
    """Train on the uses before `split`, hold out those from it on: for each member with both,
    and a held-out offer it had not used before, precision@k of `recommend` (co-occurrence,
    then popularity) and of the popularity baseline (the most used offers it had not used)."""
    train: dict[str, set[Offer]] = defaultdict(set)
    later: dict[str, set[Offer]] = defaultdict(set)
    for use in uses:
        (train if use.at < split else later)[use.member_id].add(use.offer)
    similar = similarities(train)
    popular = popularity(train)
    result = Evaluation(k)
    reasons: Counter[str] = Counter()
    total_rec = total_pop = 0.0
    for member_id, before in train.items():
        relevant = later.get(member_id, set()) - before
        if not relevant:
            continue
        found = recommend(before, (), similar, popular=popular, size=k)
        reasons.update(r.reason.value for r in found)
        baseline = [offer for offer, _ in popular if offer not in before][:k]
        total_rec += precision_at(k, [r.offer for r in found], relevant)
        total_pop += precision_at(k, baseline, relevant)
        result.members += 1
    if result.members:
        result.recommender = total_rec / result.members
        result.popularity = total_pop / result.members
    result.by_reason = dict(reasons)
    return result
