"""The scheduled jobs: pending points that become available, and lots that expire. Chunked
(one transaction per chunk of members), idempotent (only lots still due are touched) and
resumable (each chunk commits; a crash loses nothing done)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from loyalty_points.domain.ledger import LotStatus
from loyalty_points.service_layer.ports import PointsWork


@dataclass
class JobResult:
    members: int = 0
    items: int = 0
    points: int = 0
    done: bool = True


async def activate_pending_chunk(
    uow: PointsWork, as_of: datetime, chunk: int, now: datetime
) -> JobResult:
    result = JobResult()
    members = await uow.ledger.members_with_due_pending(as_of, chunk)
    for member_id in members:
        account = await uow.ledger.account(member_id, lock=True)
        assert account is not None
        for lot in await uow.ledger.due_pending_lots(member_id, as_of):
            result.points += account.activate(lot, now)
            result.items += 1
        await uow.ledger.save(account, now)
        result.members += 1
    result.done = len(members) < chunk
    return result


async def expire_chunk(uow: PointsWork, as_of: datetime, chunk: int, now: datetime) -> JobResult:
    """Expire the due lots of up to `chunk` members."""
    result = JobResult()
    members = await uow.ledger.members_with_expired_lots(as_of, chunk)
    for member_id in members:
        account = await uow.ledger.account(member_id, lock=True)
        assert account is not None
        lots, points = account.expire(
            await uow.ledger.lots(member_id, [LotStatus.OPEN]), as_of, now
        )
        if not lots:
            continue
        await uow.ledger.save(account, now)
        result.members += 1
        result.items += lots
        result.points += points
    result.done = len(members) < chunk
    return result


async def run_in_chunks(
    uow_factory: Callable[[], PointsWork],
    step: Callable[[PointsWork], Awaitable[JobResult]],
) -> JobResult:
    """Run a chunked job to the end, one transaction per chunk."""
    total = JobResult()
    while True:
        async with uow_factory() as uow:
            part = await step(uow)
            await uow.commit()
        total.members += part.members
        total.items += part.items
        total.points += part.points
        if part.done:
            return total
