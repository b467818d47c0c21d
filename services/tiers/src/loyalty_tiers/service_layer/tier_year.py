"""The tier year's end: members whose tier year ended (and its grace days) are judged on the
activity within it, chunk by chunk, a few statements per chunk. An operator's run may stop after
so many and ask how many members are still due."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from loyalty_kit.jobs import Chunks

from loyalty_tiers.service_layer.ladders import ladder
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


@dataclass
class YearEnd:
    judged: int = 0
    retained: int = 0
    downgraded: int = 0


async def year_end_chunk(uow: AbstractUnitOfWork, as_of: datetime, chunk: int) -> YearEnd:
    """Judge up to `chunk` tier years that ended by `as_of` (and their grace days), in a few
    statements for the whole chunk. Each judgement moves the member's tier year on, so running
    again judges nothing twice; a member whose several years passed unjudged is judged year by
    year. Rows another replica is judging are skipped."""
    rules = await ladder(uow)
    members = await uow.tiers.members_due(as_of - timedelta(days=rules.grace_days), chunk)
    result = YearEnd()
    if not members:
        return result
    years = await uow.tiers.activities([(m.member_id, *m.tier_year(rules)) for m in members])
    for member in members:
        kept = member.judge_tier_year(rules, rules.activity(years.get(member.member_id, {})), as_of)
        result.judged += 1
        result.retained += kept
        result.downgraded += not kept
    await uow.tiers.save(members)
    return result


async def run_year_end(
    uow_factory: Callable[[], AbstractUnitOfWork], as_of: datetime, chunk: int, *, limit: int = 0
) -> YearEnd:
    """Judge chunk after chunk until no tier year is due, or `limit` were judged (0: none)."""
    total, chunks = YearEnd(), Chunks(chunk, limit)
    async with uow_factory() as uow:
        if await uow.tiers.ladder() is None:
            return total  # nothing to judge against yet
    while (size := chunks.next(total.judged)) > 0:
        async with uow_factory() as uow:
            part = await year_end_chunk(uow, as_of, size)
            await uow.commit()
        if part.judged == 0:
            return total
        total.judged += part.judged
        total.retained += part.retained
        total.downgraded += part.downgraded
    return total


async def members_due(uow: AbstractUnitOfWork, as_of: datetime) -> int:
    """Members whose tier year and its grace days ended by `as_of` (none before a ladder)."""
    rules = await uow.tiers.ladder()
    if rules is None:
        return 0
    return await uow.tiers.count_members_due(as_of - timedelta(days=rules.grace_days))
