"""Challenges, badges and leaderboards' use cases.

An event (a purchase, an activity, a referral) counts once per challenge and once for the
leaderboards' scores, however often it arrives (`counted_events`, by the event's content key).
A member's progress row is locked while an event counts, so concurrent events of one member
count one after the other. A completion is inserted unique per member, challenge and period
key before its rewards are asked for, with idempotency keys derived from it: a crash between
the call and the commit repeats the same calls, which points and benefits answer once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from loyalty.engagement.v1 import events_pb2
from loyalty_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
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
    Occurrence,
    Progress,
    Window,
    WindowKind,
    completion_key,
    counts_for,
    local_day,
    metric_scores,
    period_bounds,
    period_of,
    valid_period,
)
from loyalty_engagement.service_layer.ports import ActionRefused, Actions
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork

LEADERBOARD_COUNTER = "leaderboards"
PAYOUT_CHUNK = 100
_PURCHASE_GOALS = (GoalKind.PURCHASES, GoalKind.SPEND, GoalKind.DISTINCT_UNITS)


class ChallengeNotFound(NotFound):
    reason = "CHALLENGE_NOT_FOUND"


class LeaderboardNotFound(NotFound):
    reason = "LEADERBOARD_NOT_FOUND"


class PeriodNotEnded(FailedPrecondition):
    reason = "PERIOD_NOT_ENDED"


# --- challenges -----------------------------------------------------------------------------


async def create(uow: EngagementUnitOfWork, spec: ChallengeSpec, now: datetime) -> StoredChallenge:
    spec.check()
    return await uow.challenges.add(uuid.uuid4().hex, spec, now)


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
    """Count one member event for the leaderboards and every running challenge it counts for."""
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
    """A batch's purchases, each counted as `on_occurrence` would, set-based: the scores'
    first counts and additions, the challenges' first counts, the progress rows (locked in
    one order) and their completions read once each; then every event in order in memory,
    the progress saved in one statement, a completion paid as a lone event pays it."""
    if not events:
        return
    counted = await uow.challenges.first_counts(
        [(LEADERBOARD_COUNTER, e.key) for e in events if any(metric_scores(e, False).values())],
        now,
    )
    scores: dict[tuple[str, str, str, str], int] = {}
    for event in events:
        if (LEADERBOARD_COUNTER, event.key) not in counted:
            continue
        counted.discard((LEADERBOARD_COUNTER, event.key))  # the same event twice: once
        scopes = [GROUP] + ([event.unit] if event.unit and event.unit != GROUP else [])
        for metric, score in metric_scores(event, False).items():
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
    progress = await uow.challenges.locked_progresses(
        [(c.challenge_id, e.member_id, period) for c, e, period, _ in counting], now
    )
    done = await uow.challenges.completed_of(
        [(c.challenge_id, e.member_id, key) for c, e, _, key in counting]
    )
    saved: dict[tuple[str, str, str], Progress] = {}
    reached: list[tuple[StoredChallenge, str, str, str]] = []
    for challenge, event, period, key in counting:
        cid, member = challenge.challenge_id, event.member_id
        if (cid, member, key) in done:
            continue  # done for this period (or for good): nothing more to count
        slot = (cid, member, period)
        spec = challenge.spec
        progress[slot] = saved[slot] = progress[slot].count(spec.goal, event, spec.time_zone)
        if saved[slot].reached(spec.goal):
            done.add((cid, member, key))
            reached.append((challenge, member, period, key))
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
    counted = progress.count(spec.goal, event, spec.time_zone)
    await uow.challenges.save_progress(cid, member, period, counted, now)
    if counted.reached(spec.goal) and await uow.challenges.complete(cid, member, key, period, now):
        note = await _reward(uow, actions, challenge, member, key, now)
        await uow.challenges.note_rewards(cid, member, key, note)


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
    kept = {(p.challenge_id, p.period): p for p in await uow.challenges.member_progress(member_id)}
    done = await uow.challenges.completions(member_id)
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
    revoked = await uow.challenges.revoke_badge(member_id, badge)
    await uow.challenges.audit(member_id, badge, "revoke", by[0], by[1], reason, now)
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
    scores = {m: s for m, s in metric_scores(event, referral).items() if s}
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
