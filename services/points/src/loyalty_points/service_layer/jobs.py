"""The scheduled jobs: pending points that become available, and lots that expire. Chunked
(one transaction per chunk of members), idempotent (only lots still due are touched) and
resumable (each chunk commits; a crash loses nothing done). An operator's run may stop after so
many members and say how many are still due, so a tool can walk the job in steps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from loyalty_kit.jobs import UNTIL_DONE, Chunks

from loyalty_points.domain.events import ledger_as_posted
from loyalty_points.domain.ledger import LotStatus
from loyalty_points.service_layer.ports import PointsWork


@dataclass
class JobResult:
    members: int = 0
    items: int = 0
    points: int = 0
    done: bool = True


# One chunk of a job: (unit of work, at most this many members) -> what it did.
Step = Callable[[PointsWork, int], Awaitable[JobResult]]


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
    uow_factory: Callable[[], PointsWork], step: Step, chunks: Chunks = UNTIL_DONE
) -> JobResult:
    """Run a chunked job, one transaction per chunk, to the end or until `chunks.limit` members
    were taken (`done` False: some may still be due)."""
    total, taken = JobResult(), 0
    while (size := chunks.next(taken)) > 0:
        async with uow_factory() as uow:
            part = await step(uow, size)
            await uow.commit()
        total.members += part.members
        total.items += part.items
        total.points += part.points
        taken += size  # a chunk that is not the last took all it asked for
        if part.done:
            return total
    total.done = False
    return total


async def members_due_activation(uow: PointsWork, as_of: datetime) -> int:
    """Members with pending points whose period has passed by `as_of`."""
    return await uow.ledger.count_members_with_due_pending(as_of)


async def members_due_expiry(uow: PointsWork, as_of: datetime) -> int:
    """Members with points whose expiry has come by `as_of`."""
    return await uow.ledger.count_members_with_expired_lots(as_of)


@dataclass
class Republished:
    """What a walk of the ledger published, and where it ended (None: at the last member)."""

    members: int = 0
    postings: int = 0
    movements: int = 0
    after: str | None = None


async def republish_ledger(
    uow_factory: Callable[[], PointsWork], after: str | None, chunks: Chunks = UNTIL_DONE
) -> Republished:
    """Publish the ledgers of the members after `after` again, as LedgerPosted events, one
    transaction per chunk of members (their events go to the outbox with it), to the last
    member or until `chunks.limit` members. Nothing is locked: a member's account saved while
    its chunk is read publishes its own LedgerPosted, and a read side keeps each posting once."""
    done = Republished(after=after)
    taken = 0
    while (size := chunks.next(taken)) > 0:
        async with uow_factory() as uow:
            members = await uow.ledger.members_after(done.after, size)
            for member_id, (postings, movements) in (await uow.ledger.ledgers(members)).items():
                for event in ledger_as_posted(member_id, postings, movements):
                    uow.record(event)
                done.members += bool(postings or movements)
                done.postings += len(postings)
                done.movements += len(movements)
            await uow.commit()
        taken += len(members)
        if len(members) < size:
            done.after = None
            return done
        done.after = members[-1]
    return done
