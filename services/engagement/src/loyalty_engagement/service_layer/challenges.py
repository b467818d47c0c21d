"""Challenges, badges and leaderboards' use cases.

An event (a purchase, an activity, a referral) counts once per challenge and once for the
leaderboards' scores, however often it arrives (`counted_events`, by the event's content key).
A member's progress row is locked while an event counts, so concurrent events of one member
count one after the other. A completion is inserted unique per member, challenge and period
key before its rewards are asked for, with idempotency keys derived from it: a crash between
the call and the commit repeats the same calls, which points and benefits answer once.

Refunds: a purchase is kept with its refunds (each once, by its reverse posting), and a
purchase goal's progress is recomputed from the period's purchases net of refunds; the
leaderboards' scores change by the difference the refund makes. A completion stands: a refund
after it takes nothing back (the reward and the badge are kept), and a leaderboard period
already closed is not paid again. Merges: the absorbed member's purchases, badges, completions
and scores become the survivor's, and each challenge period they both had progress in is
combined and judged again: completed once, paid once (an open period only).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from loyalty.engagement.v1 import events_pb2
from loyalty_kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.timestamps import timestamp

from loyalty_engagement.adapters.challenges import (
    HeldBadge,
    Payout,
    StoredChallenge,
    StoredLeaderboard,
)
from loyalty_engagement.domain.challenges import (
    DEFAULT_TIME_ZONE,
    ChallengeSpec,
    GoalKind,
    LeaderboardSpec,
    Metric,
    Occurrence,
    Progress,
    Purchase,
    Window,
    WindowKind,
    completion_key,
    counts_for,
    local_day,
    longer_streak,
    metric_scores,
    period_bounds,
    period_of,
    purchase_progress,
    purchase_scores,
    valid_period,
)
from loyalty_engagement.service_layer.ports import ActionRefused, Actions
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork

LEADERBOARD_COUNTER = "leaderboards"
PAYOUT_CHUNK = 100
_PURCHASE_GOALS = (GoalKind.PURCHASES, GoalKind.SPEND, GoalKind.DISTINCT_UNITS)


class ChallengeNotFound(NotFound):
    reason = "CHALLENGE_NOT_FOUND"


class ChallengeKeyTaken(AlreadyExists):
    reason = "CHALLENGE_KEY_TAKEN"


class LeaderboardNotFound(NotFound):
    reason = "LEADERBOARD_NOT_FOUND"


class PeriodNotEnded(FailedPrecondition):
    reason = "PERIOD_NOT_ENDED"


# --- challenges -----------------------------------------------------------------------------


async def create(
    uow: EngagementUnitOfWork, spec: ChallengeSpec, now: datetime, key: str = ""
) -> StoredChallenge:
    """A new challenge; with `key`, the only one with that key (CHALLENGE_KEY_TAKEN
    otherwise)."""
    spec.check()
    made = await uow.challenges.add(uuid.uuid4().hex, spec, now, key)
    if made is None:
        raise ChallengeKeyTaken(f"a challenge with the key {key!r} exists already")
    return made


async def get(uow: EngagementUnitOfWork, challenge_id: str) -> StoredChallenge:
    found = await uow.challenges.get(challenge_id)
    if found is None:
        raise ChallengeNotFound(f"challenges/{challenge_id} does not exist")
    return found


async def on_occurrence(
    uow: EngagementUnitOfWork,
    actions: Actions,
    event: Occurrence,
    now: datetime,
    *,
    referral: bool = False,
) -> None:
    """Count one member event for the leaderboards and every running challenge it counts for
    (an absorbed member's, still in flight at the merge, for the survivor)."""
    if (survivor := await uow.challenges.survivor_of(event.member_id)) != event.member_id:
        event = replace(event, member_id=survivor)
    purchase = not (referral or event.activity_type)
    if purchase:
        await uow.challenges.serialize(event.key)
        await uow.challenges.keep_purchase(
            event.key, event.member_id, event.unit, event.spend, event.at
        )
    await _score(uow, event, referral, now)
    if referral:
        return
    kinds = (GoalKind.STREAK,) if event.activity_type else _PURCHASE_GOALS
    for challenge in await uow.challenges.running(kinds, event.at):
        if event.at < challenge.start_at or not counts_for(challenge.spec.goal, event):
            continue
        if not await uow.challenges.first_count(
            f"challenge:{challenge.challenge_id}", event.key, now
        ):
            continue  # counted before (a replay under another event ID)
        await _count(uow, actions, challenge, event, now)


async def on_purchases(
    uow: EngagementUnitOfWork, actions: Actions, events: list[Occurrence], now: datetime
) -> None:
    """A batch's purchases, each counted as `on_occurrence` would, set-based: the members'
    survivors read, the purchases locked (in one order) and kept, and read back with their
    refunds, once each; the scores' first counts and additions (net of refunds), the
    challenges' first counts, the progress rows (locked in one order), their completions and
    their periods' purchases read once each; then every event in order in memory (its purchase
    added to the period's, the progress their fold net of refunds), the contributions and the
    progress saved in one statement each, a completion paid as a lone event pays it."""
    if not events:
        return
    survivors = await uow.challenges.survivors_of([e.member_id for e in events])
    events = [
        replace(e, member_id=survivors[e.member_id]) if e.member_id in survivors else e
        for e in events
    ]
    await uow.challenges.serialize_many([e.key for e in events])
    firsts = {e.key: e for e in reversed(events)}  # the first of a key is the one kept
    await uow.challenges.keep_purchases(
        [(e.key, e.member_id, e.unit, e.spend, e.at) for e in firsts.values()]
    )
    kept = await uow.challenges.kept_purchases(list(firsts))

    def scores_of(event: Occurrence) -> dict[Metric, int]:
        found = kept.get(event.key)  # net of a refund that came first
        scores = purchase_scores(found.purchase) if found else metric_scores(event, False)
        return {m: s for m, s in scores.items() if s}

    counted = await uow.challenges.first_counts(
        [(LEADERBOARD_COUNTER, e.key) for e in events if scores_of(e)], now
    )
    scores: dict[tuple[str, str, str, str], int] = {}
    for event in events:
        if (LEADERBOARD_COUNTER, event.key) not in counted:
            continue
        counted.discard((LEADERBOARD_COUNTER, event.key))  # the same event twice: once
        scopes = [GROUP] + ([event.unit] if event.unit and event.unit != GROUP else [])
        for metric, score in scores_of(event).items():
            for scope in scopes:
                for period in _periods(event.at):
                    row = (metric.value, scope, period, event.member_id)
                    scores[row] = scores.get(row, 0) + score
    await uow.challenges.add_scores([(*row, score) for row, score in scores.items() if score])
    first, last = min(e.at for e in events), max(e.at for e in events)
    found = await uow.challenges.running_between(_PURCHASE_GOALS, first, last)
    pairs: list[tuple[StoredChallenge, Occurrence]] = [
        (challenge, event)
        for event in events
        for challenge in found
        if challenge.start_at <= event.at
        and (challenge.spec.end_at is None or event.at < challenge.spec.end_at)
        and counts_for(challenge.spec.goal, event)
    ]
    fresh = await uow.challenges.first_counts(
        [(f"challenge:{c.challenge_id}", e.key) for c, e in pairs], now
    )
    counting: list[tuple[StoredChallenge, Occurrence, str, str]] = []
    for challenge, event in pairs:
        counter = (f"challenge:{challenge.challenge_id}", event.key)
        if counter not in fresh:
            continue  # counted before (a replay under another event ID)
        fresh.discard(counter)
        spec = challenge.spec
        period = period_of(spec.window, event.at, spec.time_zone, challenge.start_at)
        counting.append((challenge, event, period, completion_key(spec.repeatable, period)))
    slots = [(c.challenge_id, e.member_id, period) for c, e, period, _ in counting]
    await uow.challenges.locked_progresses(slots, now)
    done = await uow.challenges.completed_of(
        [(c.challenge_id, e.member_id, key) for c, e, _, key in counting]
    )
    bought = await uow.challenges.periods_purchases(slots)
    contributed: list[tuple[str, str, str, str]] = []
    saved: dict[tuple[str, str, str], Progress] = {}
    reached: list[tuple[StoredChallenge, str, str, str]] = []
    for challenge, event, period, key in counting:
        cid, member = challenge.challenge_id, event.member_id
        if (cid, member, key) in done:
            continue  # done for this period (or for good): nothing more to count
        slot = (cid, member, period)
        contributed.append((cid, event.key, member, period))
        purchases = bought.setdefault(slot, [])
        if all(p.key != event.key for p in purchases):
            purchases.append(kept[event.key].purchase)
        saved[slot] = purchase_progress(challenge.spec.goal, purchases)
        if saved[slot].reached(challenge.spec.goal):
            done.add((cid, member, key))
            reached.append((challenge, member, period, key))
    await uow.challenges.add_contributions(contributed)
    await uow.challenges.save_progresses(saved, now)
    for challenge, member, period, key in reached:
        cid = challenge.challenge_id
        if await uow.challenges.complete(cid, member, key, period, now):
            note = await _reward(uow, actions, challenge, member, key, now)
            await uow.challenges.note_rewards(cid, member, key, note)


async def _count(
    uow: EngagementUnitOfWork,
    actions: Actions,
    challenge: StoredChallenge,
    event: Occurrence,
    now: datetime,
) -> None:
    spec = challenge.spec
    cid, member = challenge.challenge_id, event.member_id
    period = period_of(spec.window, event.at, spec.time_zone, challenge.start_at)
    key = completion_key(spec.repeatable, period)
    progress = await uow.challenges.locked_progress(cid, member, period, now)
    if await uow.challenges.completed(cid, member, key):
        return  # done for this period (or for good): nothing more to count
    if spec.goal.kind is GoalKind.STREAK:
        counted = progress.count(spec.goal, event, spec.time_zone)
    else:
        await uow.challenges.add_contribution(cid, event.key, member, period)
        counted = purchase_progress(
            spec.goal, await uow.challenges.period_purchases(cid, member, period)
        )
    await _settle(uow, actions, challenge, member, period, counted, now)


async def _settle(
    uow: EngagementUnitOfWork,
    actions: Actions,
    challenge: StoredChallenge,
    member: str,
    period: str,
    progress: Progress,
    now: datetime,
) -> None:
    """Keep a member's progress in a period (its row locked by the caller) and complete and
    pay the challenge if it reaches the goal and was not completed before."""
    spec, cid = challenge.spec, challenge.challenge_id
    key = completion_key(spec.repeatable, period)
    await uow.challenges.save_progress(cid, member, period, progress, now)
    if progress.reached(spec.goal) and await uow.challenges.complete(cid, member, key, period, now):
        note = await _reward(uow, actions, challenge, member, key, now)
        await uow.challenges.note_rewards(cid, member, key, note)


async def on_refund(
    uow: EngagementUnitOfWork,
    refund_key: str,
    purchase_key: str,
    member_id: str,
    spend: Decimal,
    at: datetime,
    now: datetime,
) -> None:
    """Take a refund's part of a purchase back out of the leaderboards' scores and of the
    progress of every challenge period it counted in and that is not completed. A refund that
    comes before its purchase is remembered: the purchase counts net of it."""
    await uow.challenges.serialize(purchase_key)
    member_id = await uow.challenges.survivor_of(member_id)
    before = await uow.challenges.kept_purchase(purchase_key)
    if not await uow.challenges.add_refund(refund_key, purchase_key, member_id, spend, at):
        return  # refunded before (a replay)
    if before is None:
        return  # the purchase has not come: it will count net of this refund
    after = await uow.challenges.kept_purchase(purchase_key)
    assert after is not None
    if await uow.challenges.counted(LEADERBOARD_COUNTER, purchase_key):
        await _rescore(uow, before.member_id, before.occurred_at, before.purchase, after.purchase)
    for cid, member, period in await uow.challenges.contributions_of(purchase_key):
        challenge = await uow.challenges.get(cid)
        if challenge is None:
            continue
        await uow.challenges.locked_progress(cid, member, period, now)
        key = completion_key(challenge.spec.repeatable, period)
        if await uow.challenges.completed(cid, member, key):
            continue  # a completion stands: its reward and badge are kept
        progress = purchase_progress(
            challenge.spec.goal, await uow.challenges.period_purchases(cid, member, period)
        )
        await uow.challenges.save_progress(cid, member, period, progress, now)


async def _rescore(
    uow: EngagementUnitOfWork, member_id: str, at: datetime, before: Purchase, after: Purchase
) -> None:
    old, new = purchase_scores(before), purchase_scores(after)
    deltas = {m: new[m] - old[m] for m in new if new[m] != old[m]}
    scopes = [GROUP] + ([before.unit] if before.unit and before.unit != GROUP else [])
    await uow.challenges.add_scores(
        [
            (metric.value, scope, period, member_id, delta)
            for metric, delta in deltas.items()
            for scope in scopes
            for period in _periods(at)
        ]
    )


async def on_merge(
    uow: EngagementUnitOfWork, actions: Actions, survivor: str, absorbed: str, now: datetime
) -> None:
    """The absorbed member's challenges, badges and standings become the survivor's. Each
    challenge period the absorbed member had progress in is combined with the survivor's:
    purchase goals from both members' purchases, a streak the longer of the two; a completion
    of either stands (not paid again), and a combined progress that reaches the goal in a
    period still open completes it for the survivor, paid once."""
    await uow.challenges.lock_members([survivor, absorbed])
    await uow.challenges.record_merge(absorbed, survivor, now)
    moved = await uow.challenges.move_member(absorbed, survivor)
    for theirs in moved:
        challenge = await uow.challenges.get(theirs.challenge_id)
        if challenge is None:
            continue
        spec, cid, period = challenge.spec, challenge.challenge_id, theirs.period
        ours = await uow.challenges.locked_progress(cid, survivor, period, now)
        if await uow.challenges.completed(cid, survivor, completion_key(spec.repeatable, period)):
            continue
        if spec.goal.kind is GoalKind.STREAK:
            combined = longer_streak(ours, theirs.progress)
        else:
            combined = purchase_progress(
                spec.goal, await uow.challenges.period_purchases(cid, survivor, period)
            )
        if _open(challenge, period, now):
            await _settle(uow, actions, challenge, survivor, period, combined, now)
        else:
            await uow.challenges.save_progress(cid, survivor, period, combined, now)


def _open(challenge: StoredChallenge, period: str, now: datetime) -> bool:
    spec = challenge.spec
    _, end = period_bounds(spec.window, period, spec.time_zone)
    return now < end and (spec.end_at is None or now < spec.end_at)


async def _reward(
    uow: EngagementUnitOfWork,
    actions: Actions,
    challenge: StoredChallenge,
    member_id: str,
    key: str,
    now: datetime,
) -> str:
    """Pay a completion; what was done, for the record. A definite refusal is recorded and
    the rest paid; an unknown outcome raises (the event is handled again, the same keys)."""
    reward, spec = challenge.spec.reward, challenge.spec
    idempotency = f"challenge-{challenge.challenge_id}-{member_id}-{key}"
    done: list[str] = []
    if reward.points:
        try:
            posting = await actions.award_points(
                member_id, reward.points, reward.funding_unit, spec.display_name, idempotency
            )
            done.append(f"points:{posting}")
        except ActionRefused as refused:
            done.append(f"points-refused:{refused.reason}")
    if reward.coupon_template:
        try:
            code = await actions.issue_coupon(
                member_id,
                reward.coupon_template,
                reward.coupon_unit or spec.unit,
                f"{idempotency}-coupon",
            )
            done.append(f"coupon:{code}")
        except ActionRefused as refused:
            done.append(f"coupon-refused:{refused.reason}")
    if reward.badge:
        await earn_badge(uow, member_id, reward.badge, f"challenges/{challenge.challenge_id}", now)
        done.append(f"badge:{reward.badge}")
    return " ".join(done)


@dataclass(frozen=True)
class ProgressView:
    challenge: StoredChallenge
    period: str
    progress: Progress
    completed_at: datetime | None


async def member_progress(
    uow: EngagementUnitOfWork, member_id: str, now: datetime
) -> list[ProgressView]:
    """The member's progress in every running challenge's current period (a streak whose
    last day is before yesterday shows as broken: 0)."""
    kinds = (*_PURCHASE_GOALS, GoalKind.STREAK)
    running = await uow.challenges.running(kinds, now)
    # Completions before progress: each read sees what was committed when it ran, and a
    # completion commits with the progress that reached it. Read the other way round, a
    # completion committed between the reads showed as completed with no progress (0, no units).
    done = await uow.challenges.completions(member_id)
    kept = {(p.challenge_id, p.period): p for p in await uow.challenges.member_progress(member_id)}
    views: list[ProgressView] = []
    for c in sorted(running, key=lambda c: c.challenge_id):
        spec = c.spec
        period = period_of(spec.window, now, spec.time_zone, c.start_at)
        found = kept.get((c.challenge_id, period))
        progress = found.progress if found else Progress()
        yesterday = local_day(now, spec.time_zone) - timedelta(days=1)
        if spec.goal.kind is GoalKind.STREAK and (progress.last_day or yesterday) < yesterday:
            progress = Progress()  # a day missed: the streak is broken
        completed = done.get((c.challenge_id, completion_key(spec.repeatable, period)))
        views.append(ProgressView(c, period, progress, completed))
    return views


# --- badges ---------------------------------------------------------------------------------


async def earn_badge(
    uow: EngagementUnitOfWork, member_id: str, badge: str, source: str, now: datetime
) -> bool:
    """Award a badge and announce it (BadgeEarned) unless the member holds it already."""
    if not await uow.challenges.award_badge(member_id, badge, source, now):
        return False
    await uow.outbox.add(
        events_pb2.BadgeEarned(
            member_id=member_id, badge=badge, source=source, earned_at=timestamp(now)
        )
    )
    return True


async def grant_badge(
    uow: EngagementUnitOfWork,
    member_id: str,
    badge: str,
    reason: str,
    by: tuple[str, str],
    now: datetime,
) -> HeldBadge:
    await earn_badge(uow, member_id, badge, "grant", now)
    await uow.challenges.audit(member_id, badge, "grant", by[0], by[1], reason, now)
    held = await uow.challenges.held_badge(member_id, badge)
    assert held is not None  # awarded above, or held before
    return held


async def revoke_badge(
    uow: EngagementUnitOfWork,
    member_id: str,
    badge: str,
    reason: str,
    by: tuple[str, str],
    now: datetime,
) -> bool:
    """Take a badge back and announce it (BadgeRevoked) when the member held it."""
    revoked = await uow.challenges.revoke_badge(member_id, badge)
    await uow.challenges.audit(member_id, badge, "revoke", by[0], by[1], reason, now)
    if revoked:
        await uow.outbox.add(
            events_pb2.BadgeRevoked(member_id=member_id, badge=badge, revoked_at=timestamp(now))
        )
    return revoked


# --- leaderboards ---------------------------------------------------------------------------


def _periods(at: datetime) -> tuple[str, str]:
    start = at  # calendar periods ignore the start
    return (
        period_of(Window(WindowKind.MONTH), at, DEFAULT_TIME_ZONE, start),
        period_of(Window(WindowKind.QUARTER), at, DEFAULT_TIME_ZONE, start),
    )


async def _score(
    uow: EngagementUnitOfWork, event: Occurrence, referral: bool, now: datetime
) -> None:
    scores: dict[Metric, int] = metric_scores(event, referral)
    if not (referral or event.activity_type):
        kept = await uow.challenges.kept_purchase(event.key)
        if kept is not None:  # net of a refund that came first
            scores = purchase_scores(kept.purchase)
    scores = {m: s for m, s in scores.items() if s}
    if not scores or not await uow.challenges.first_count(LEADERBOARD_COUNTER, event.key, now):
        return
    scopes = [GROUP] + ([event.unit] if event.unit and event.unit != GROUP else [])
    await uow.challenges.add_scores(
        [
            (metric.value, scope, period, event.member_id, score)
            for metric, score in scores.items()
            for scope in scopes
            for period in _periods(event.at)
        ]
    )


async def create_leaderboard(
    uow: EngagementUnitOfWork, spec: LeaderboardSpec, now: datetime
) -> StoredLeaderboard:
    spec.check()
    return await uow.challenges.add_leaderboard(uuid.uuid4().hex, spec, now)


async def leaderboard(uow: EngagementUnitOfWork, leaderboard_id: str) -> StoredLeaderboard:
    found = await uow.challenges.leaderboard(leaderboard_id)
    if found is None:
        raise LeaderboardNotFound(f"leaderboards/{leaderboard_id} does not exist")
    return found


def scope_of(board: StoredLeaderboard) -> str:
    return board.spec.scope_unit or GROUP


def period_named(board: StoredLeaderboard, period: str, now: datetime, field: str) -> str:
    """The period asked for, or the current one."""
    window = Window(board.spec.period)
    if not period:
        return period_of(window, now, DEFAULT_TIME_ZONE, now)
    if not valid_period(window, period):
        example = "2026-Q4" if board.spec.period is WindowKind.QUARTER else "2026-12"
        raise InvalidArgument.of([FieldViolation(field, f"a period like {example}")])
    return period


def previous_period(board: StoredLeaderboard, now: datetime) -> str:
    window = Window(board.spec.period)
    start, _ = period_bounds(
        window, period_of(window, now, DEFAULT_TIME_ZONE, now), DEFAULT_TIME_ZONE
    )
    return period_of(window, start - timedelta(seconds=1), DEFAULT_TIME_ZONE, now)


@dataclass(frozen=True)
class Closed:
    paid: int
    total: int


async def close_period(
    uow_factory: Callable[[], EngagementUnitOfWork],
    actions: Actions,
    leaderboard_id: str,
    period: str,
    now: datetime,
) -> Closed:
    """Close a period that has ended: rank its members (one statement per reward, in one
    transaction with the close's mark), then pay what is owed a chunk a transaction. Closing
    again pays only what a failed close left unpaid."""
    async with uow_factory() as uow:
        board = await leaderboard(uow, leaderboard_id)
        window = Window(board.spec.period)
        _, end = period_bounds(window, period, DEFAULT_TIME_ZONE)
        if now < end:
            raise PeriodNotEnded(f"{period} ends at {end.isoformat()}")
        await uow.challenges.close(board, scope_of(board), period, now)
        await uow.commit()
    paid = 0
    while True:
        async with uow_factory() as uow:
            owed = await uow.challenges.unpaid(leaderboard_id, period, PAYOUT_CHUNK)
            for payout in owed:
                await _pay(actions, board, period, payout)
                await uow.challenges.paid(leaderboard_id, period, payout, now)
            await uow.commit()
        paid += len(owed)
        if len(owed) < PAYOUT_CHUNK:
            break
    async with uow_factory() as uow:
        total = await uow.challenges.payouts_total(leaderboard_id, period)
    return Closed(paid, total)


async def _pay(actions: Actions, board: StoredLeaderboard, period: str, payout: Payout) -> None:
    reward = board.spec.rewards[payout.reward]
    key = f"leaderboard-{board.leaderboard_id}-{period}-{payout.member_id}-{payout.reward}"
    try:
        if reward.points:
            await actions.award_points(
                payout.member_id, reward.points, reward.funding_unit, board.spec.display_name, key
            )
        if reward.coupon_template:
            await actions.issue_coupon(
                payout.member_id, reward.coupon_template, board.spec.unit, f"{key}-coupon"
            )
    except ActionRefused:
        pass  # a definite refusal (an unknown template): marked paid, not asked again


async def close_ended_periods(
    uow_factory: Callable[[], EngagementUnitOfWork], actions: Actions, now: datetime
) -> int:
    """The scheduled close: every leaderboard's previous period, unless closed already."""
    async with uow_factory() as uow:
        boards = await uow.challenges.all_leaderboards()
        todo = [
            (b.leaderboard_id, previous_period(b, now))
            for b in boards
            if await uow.challenges.closed_at(b.leaderboard_id, previous_period(b, now)) is None
        ]
    for leaderboard_id, period in todo:
        await close_period(uow_factory, actions, leaderboard_id, period, now)
    return len(todo)
