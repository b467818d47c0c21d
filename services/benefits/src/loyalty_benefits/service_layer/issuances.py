"""Bulk coupon issuances to a segment: created by an RPC, carried out here chunk by chunk.

Each chunk reads a page of the segment from the identity service (a tag's members) or the
insights service (a dynamic segment's members, as they stand then) (no transaction open across
the call), then, in one transaction, locks the issuance, checks that it still stands where the
page was read from (else another replica committed that chunk: this attempt is dropped),
issues the page's coupons under the issuance's grant key (unique per member: a replayed chunk
skips the members who have theirs), writes their CouponIssued events to the outbox and moves
the position on. A service stopped mid-way carries on from the last committed chunk when it
(or any replica) starts again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime

from loyalty_kit.caller import check_unit
from loyalty_kit.clock import Clock
from loyalty_kit.errors import DomainError, Unavailable
from loyalty_kit.jobs import log_round_failed
from loyalty_kit.logs import get_logger

from loyalty_benefits.domain.coupons import issuable_window, issue
from loyalty_benefits.domain.errors import (
    CouponIssuanceNotFound,
    CouponTemplateNotFound,
    SegmentRefused,
    SegmentUnreachable,
)
from loyalty_benefits.domain.issuances import CouponIssuance, IssuanceState, grant_key
from loyalty_benefits.service_layer.handlers import active_among, catalogue
from loyalty_benefits.service_layer.ports import DynamicSegments, Segments
from loyalty_benefits.service_layer.uow import BenefitsUnitOfWork

log = get_logger("loyalty.benefits.issuances")

UowFactory = Callable[..., BenefitsUnitOfWork]


async def create(
    uow: BenefitsUnitOfWork,
    template_code: str,
    tag: str,
    issuer_unit: str | None,
    chunk_size: int,
    now: datetime,
    segment: str = "",
) -> CouponIssuance:
    """A new issuance, RUNNING. `issuer_unit`: the unit issuing (None: an admin), which may only
    issue coupons of its own or the group's templates; the template must still be issuable."""
    rules = await catalogue(uow)
    template = rules.template(template_code)
    if template is None:
        raise CouponTemplateNotFound(template_code)
    if template.unit:  # a group-wide template may be issued by any unit
        check_unit(template.unit, issuer_unit)
    issuable_window(template, now)
    issuance = CouponIssuance(
        issuance_id=str(uuid.uuid4()),
        template_code=template.code,
        tag=tag,
        issuer_unit=issuer_unit or "",
        chunk_size=chunk_size,
        created_at=now,
        updated_at=now,
        segment=segment,
    )
    await uow.issuances.add(issuance)
    return issuance


async def check_segment(dynamic: DynamicSegments, segment: str) -> None:
    """A dynamic segment an issuance may target: one the insights service knows (else its
    refusal); insights unreachable, UNAVAILABLE (nothing is created; the caller retries)."""
    try:
        await dynamic.check(segment)
    except SegmentUnreachable as unreachable:
        raise Unavailable(
            f"the insights service cannot tell the segment's members now ({unreachable})",
            reason="SEGMENT_UNAVAILABLE",
            metadata={"segment": segment},
        ) from None


async def get(uow: BenefitsUnitOfWork, issuance_id: str) -> CouponIssuance:
    found = await uow.issuances.get(issuance_id)
    if found is None:
        raise CouponIssuanceNotFound(issuance_id)
    return found


async def page(
    uow: BenefitsUnitOfWork,
    issuer_unit: str | None,
    state: IssuanceState | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[CouponIssuance]:
    """A page of issuances, newest first; a unit's own only when `issuer_unit` is given."""
    return await uow.issuances.page(
        issuer_unit=issuer_unit, state=state, before=before, limit=limit
    )


async def issue_chunk(
    uow: BenefitsUnitOfWork,
    read: CouponIssuance,
    member_ids: list[str],
    next_token: str,
    total: int,
    now: datetime,
) -> CouponIssuance | None:
    """The chunk's transaction; None when another attempt committed this chunk already. The
    segment lists suspended members too (identity keeps their tags): they, and any member not
    active, are processed but issued nothing."""
    current = await uow.issuances.get(read.issuance_id, lock=True)
    if current is None or not current.at_same_position(read):
        return None
    rules = await catalogue(uow)
    template = rules.template(current.template_code)
    try:
        if template is None:
            raise CouponTemplateNotFound(current.template_code)
        key = grant_key(current.issuance_id)
        active = await active_among(uow, member_ids)
        issued = await uow.coupons.add_granted([issue(template, m, key, now) for m in active], key)
    except DomainError as error:  # withdrawn or expired meanwhile: stop for good
        current.fail(error.reason, str(error), now)
        await uow.issuances.save(current)
        return current
    for coupon in issued:
        uow.record(coupon.issued(now))
    current.advance(len(member_ids), len(issued), next_token, total, now)
    await uow.issuances.save(current)
    return current


class CouponIssuer:
    """Carries out the issuances of the database: the ones this replica created (woken at
    once) and any left running by a replica that stopped (found by `run_pending`)."""

    def __init__(
        self, uow: UowFactory, segments: Segments, clock: Clock, dynamic: DynamicSegments
    ) -> None:
        self.uow = uow
        self.segments = segments
        self.dynamic = dynamic
        self.clock = clock
        self.wake = asyncio.Event()

    async def chunk(self, issuance_id: str) -> bool:
        """One chunk; whether the issuance is still running afterwards."""
        async with self.uow(read_only=True) as uow:
            read = await uow.issuances.get(issuance_id)
        if read is None or not read.running:
            return False
        try:
            if read.segment:
                page = await self.dynamic.page(read.segment, read.page_token, read.chunk_size)
            else:
                page = await self.segments.page(read.tag, read.page_token, read.chunk_size)
        except SegmentRefused as refused:
            async with self.uow() as uow:
                current = await uow.issuances.get(issuance_id, lock=True)
                if current is not None and current.at_same_position(read):
                    current.fail(refused.reason, str(refused), self.clock())
                    await uow.issuances.save(current)
                await uow.commit()
            return False
        async with self.uow() as uow:
            done = await issue_chunk(
                uow, read, page.member_ids, page.next_page_token, page.total, self.clock()
            )
            await uow.commit()
        if done is not None:
            log.info(
                "coupon issuance chunk",
                issuance_id=issuance_id,
                processed=done.processed_members,
                total=done.total_members,
                state=done.state.value,
            )
        return done is None or done.running

    async def run(self, issuance_id: str, stopping: asyncio.Event | None = None) -> None:
        """Chunk after chunk to the end, or until the service stops (between chunks)."""
        while await self.chunk(issuance_id):
            if stopping is not None and stopping.is_set():
                return

    async def run_pending(self, stopping: asyncio.Event | None = None) -> None:
        """Every running issuance, oldest first, to its end. The service listing its segment
        (identity, insights) unreachable: the issuance waits for the next round."""
        async with self.uow(read_only=True) as uow:
            running = await uow.issuances.running(100)
        for issuance_id in running:
            if stopping is not None and stopping.is_set():
                return
            try:
                await self.run(issuance_id, stopping)
            except SegmentUnreachable as unreachable:
                log.warning(
                    "segment unreachable; the issuance carries on later",
                    issuance_id=issuance_id,
                    code=str(unreachable),
                )

    async def serve(self, interval: float, stopping: asyncio.Event) -> None:
        """Run pending issuances now, when woken by a new one, and every `interval` seconds
        (issuances a stopped replica left running)."""
        while not stopping.is_set():
            self.wake.clear()
            try:
                await self.run_pending(stopping)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log_round_failed(log, "coupon issuances", error)
            woken = asyncio.ensure_future(self.wake.wait())
            stopped = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait(
                    {woken, stopped}, timeout=interval, return_when="FIRST_COMPLETED"
                )
            finally:
                for waiting in (woken, stopped):
                    waiting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting
