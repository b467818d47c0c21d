"""Use cases of the tiers service, each inside one unit of work.

Activity arrives as points events; each is recorded once (by its posting id) and the member's
tier is re-judged at once: an upgrade happens seconds after the purchase. Refunds reduce the
activity but never downgrade on the spot; retention is judged at the end of the tier year.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from loyalty.tiers.v1 import events_pb2
from loyalty_kit.errors import FailedPrecondition
from loyalty_kit.timestamps import timestamp

from loyalty_tiers.adapters.repository import MemberTier
from loyalty_tiers.domain.ladder import Activity, Ladder, Metric
from loyalty_tiers.service_layer.uow import TiersUnitOfWork

TIER_YEAR_MONTHS = 12


def utc_now() -> datetime:
    return datetime.now(UTC)


def add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


class NoLadder(FailedPrecondition):
    reason = "NO_LADDER"

    def __init__(self) -> None:
        super().__init__("no tier ladder is in force: publish one with UpdateLadder")


async def ladder(uow: TiersUnitOfWork) -> Ladder:
    found = await uow.tiers.ladder()
    if found is None:
        raise NoLadder()
    return found


async def publish_ladder(uow: TiersUnitOfWork, new: Ladder) -> Ladder:
    new.validate()
    new.version = await uow.tiers.add_ladder(new)
    return new


async def record_activity(
    uow: TiersUnitOfWork,
    member_id: str,
    event_id: str,
    occurred_at: datetime,
    spend: Decimal,
    points: int,
    visits: int,
    now: datetime,
) -> None:
    if await uow.tiers.record_activity(member_id, event_id, occurred_at, spend, points, visits):
        await judge_upgrade(uow, member_id, now)


async def judge_upgrade(uow: TiersUnitOfWork, member_id: str, now: datetime) -> MemberTier:
    rules = await uow.tiers.ladder()
    current = await uow.tiers.member_tier(member_id, lock=True)
    if rules is None:
        return current or MemberTier(member_id, "", now, None)
    if current is None:
        current = MemberTier(member_id, rules.tiers[0].code, now, None)
        await uow.tiers.save_member_tier(current)
        current = await uow.tiers.member_tier(member_id, lock=True)
        assert current is not None
    window = await uow.tiers.activity(member_id, add_months(now, -rules.window_months), now)
    supported = rules.supported(window)
    if supported <= rules.index_of(current.tier):
        return current  # never a downgrade here: the tier year decides
    upgraded = MemberTier(
        member_id, rules.tiers[supported].code, now, add_months(now, TIER_YEAR_MONTHS)
    )
    await uow.tiers.save_member_tier(upgraded)
    await _announce(uow, current.tier, upgraded, "qualified", now)
    return upgraded


async def _announce(
    uow: TiersUnitOfWork, before: str, after: MemberTier, reason: str, at: datetime
) -> None:
    await uow.tiers.add_history(after.member_id, before, after.tier, reason, at)
    event = events_pb2.TierChanged(
        member_id=after.member_id,
        from_tier=before,
        to_tier=after.tier,
        reason=reason,
        effective_at=timestamp(at),
    )
    if after.tier_year_end is not None:
        event.tier_year_end.CopyFrom(timestamp(after.tier_year_end))
    await uow.outbox.add(event)


async def on_member_merged(
    uow: TiersUnitOfWork, survivor_id: str, absorbed_id: str, now: datetime
) -> None:
    """Both members' activity counts for the survivor, who keeps the higher tier (and the
    later tier year end); the combined activity may qualify for more at once."""
    rules = await uow.tiers.ladder()
    locked = {
        m: await uow.tiers.member_tier(m, lock=True) for m in sorted((survivor_id, absorbed_id))
    }
    survivor, absorbed = locked[survivor_id], locked[absorbed_id]
    await uow.tiers.move_member(absorbed_id, survivor_id)
    if rules is None or absorbed is None:
        await judge_upgrade(uow, survivor_id, now)
        return
    if survivor is None or rules.index_of(absorbed.tier) > rules.index_of(survivor.tier):
        before = survivor.tier if survivor else rules.tiers[0].code
        kept = MemberTier(survivor_id, absorbed.tier, absorbed.since, absorbed.tier_year_end)
        await uow.tiers.save_member_tier(kept)
        await _announce(uow, before, kept, "merged", now)
    await judge_upgrade(uow, survivor_id, now)


@dataclass
class YearEnd:
    judged: int = 0
    retained: int = 0
    downgraded: int = 0


async def year_end_chunk(uow: TiersUnitOfWork, as_of: datetime, chunk: int) -> tuple[YearEnd, bool]:
    """Judge the tier years that ended by `as_of`, for up to `chunk` members. Each judgement
    moves the member's tier year on, so running again judges nothing twice; a member whose
    several years passed unjudged is judged year by year."""
    rules = await ladder(uow)
    result = YearEnd()
    members = await uow.tiers.members_due(as_of, chunk)
    for member_id in members:
        member = await uow.tiers.member_tier(member_id, lock=True)
        if member is None or member.tier_year_end is None or member.tier_year_end > as_of:
            continue  # judged meanwhile by another replica
        end = member.tier_year_end
        year = await uow.tiers.activity(member_id, add_months(end, -TIER_YEAR_MONTHS), end)
        current = rules.index_of(member.tier)
        after = rules.after_tier_year(current, year)
        result.judged += 1
        if after == current:
            kept = MemberTier(
                member_id, member.tier, member.since, add_months(end, TIER_YEAR_MONTHS)
            )
            await uow.tiers.save_member_tier(kept)
            await _announce(uow, member.tier, kept, "retained", end)
            result.retained += 1
        else:
            lower = rules.tiers[after].code
            moved = MemberTier(
                member_id, lower, end, add_months(end, TIER_YEAR_MONTHS) if after > 0 else None
            )
            await uow.tiers.save_member_tier(moved)
            await _announce(uow, member.tier, moved, "downgraded", end)
            result.downgraded += 1
    return result, len(members) < chunk


async def run_year_end(
    uow_factory: Callable[[], TiersUnitOfWork], as_of: datetime, chunk: int
) -> YearEnd:
    total = YearEnd()
    async with uow_factory() as uow:
        if await uow.tiers.ladder() is None:
            return total  # nothing to judge against yet
    while True:
        async with uow_factory() as uow:
            part, done = await year_end_chunk(uow, as_of, chunk)
            await uow.commit()
        total.judged += part.judged
        total.retained += part.retained
        total.downgraded += part.downgraded
        if done or part.judged == 0:
            return total


@dataclass
class TierView:
    member: MemberTier
    next_tier: str
    progress: list[tuple[Metric, Decimal, Decimal]]


async def member_view(uow: TiersUnitOfWork, member_id: str, now: datetime) -> TierView:
    rules = await ladder(uow)
    member = await uow.tiers.member_tier(member_id) or MemberTier(
        member_id, rules.tiers[0].code, now, None
    )
    window: Activity = await uow.tiers.activity(
        member_id, add_months(now, -rules.window_months), now
    )
    next_tier, progress = rules.progress(rules.index_of(member.tier), window)
    return TierView(member, next_tier, progress)
