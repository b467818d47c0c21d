"""Carrying out order imports, in every replica, as member imports are carried out
(`import_worker.py`, whose file feed this reuses): a worker takes a RUNNING order import nobody
holds (or whose holder's lease ran out), reads its file in a thread and imports its rows chunk
by chunk, each chunk in one transaction that also renews the lease and moves the checkpoint. A
replica killed mid-chunk leaves that chunk uncommitted; the next one to take the import reads
the file again, skips the rows up to the checkpoint and carries on: no order twice, none lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime
from typing import Protocol, cast
from zoneinfo import ZoneInfo

import asyncpg
from loyalty_kit import metrics
from loyalty_kit.clock import Clock
from loyalty_kit.errors import Aborted
from loyalty_kit.idempotency import is_transient_conflict
from loyalty_kit.jobs import outage
from loyalty_kit.logs import get_logger
from loyalty_kit.status import error_reference
from sqlalchemy.exc import DBAPIError

from loyalty_identity.domain.imports import ImportFileError
from loyalty_identity.domain.member_import import Failure
from loyalty_identity.domain.order_file import OrderFileReader, OrderRow
from loyalty_identity.domain.order_import import OrderCounts, OrderImport, OrderImportSpec
from loyalty_identity.service_layer import order_imports
from loyalty_identity.service_layer.import_worker import RowFeed, RowSource
from loyalty_identity.service_layer.uow import IdentityUnitOfWork
from loyalty_identity.settings import ImportSettings

log = get_logger("loyalty.identity.order_imports")

CHUNK_ATTEMPTS = 3
ROWS = "loyalty_order_import_rows"
ROWS_HELP = "Rows of order imports committed, by unit and outcome."


class OrderRowSource(Protocol):
    @property
    def bytes_read(self) -> int: ...

    def rows(self, parts: Iterable[bytes]) -> Iterator[OrderRow]: ...


OrderReaderFactory = Callable[[OrderImportSpec, datetime, str], OrderRowSource]


def order_file_reader(spec: OrderImportSpec, now: datetime, time_zone: str) -> OrderRowSource:
    return OrderFileReader(spec, now=now, time_zone=ZoneInfo(time_zone))


class OrderImportWorker:
    """Takes order imports and carries them out, one at a time."""

    def __init__(
        self,
        uow: Callable[..., IdentityUnitOfWork],
        settings: ImportSettings,
        clock: Clock,
        *,
        reader: OrderReaderFactory = order_file_reader,
        owner: str = "",
    ) -> None:
        self.uow = uow
        self.settings = settings
        self.clock = clock
        self.reader = reader
        self.owner = owner or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.wake = asyncio.Event()
        # A fault hook for tests: awaited inside each chunk's transaction, before its commit.
        self.before_commit: Callable[[OrderImport], Awaitable[None]] | None = None

    # --- the loop ---------------------------------------------------------------------------
    async def serve(self, stopping: asyncio.Event) -> None:
        """Take imports while there are any; then wait to be woken or for `poll_seconds`."""
        while not stopping.is_set():
            self.wake.clear()
            try:
                while not stopping.is_set() and await self.run_next(stopping):
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if outage(error):
                    log.warning("order imports: unavailable; retrying", error=type(error).__name__)
                else:
                    log.exception("order imports failed; retrying")
            woken = asyncio.ensure_future(self.wake.wait())
            stopped = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait(
                    {woken, stopped},
                    timeout=self.settings.poll_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiting in (woken, stopped):
                    waiting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting

    async def run_next(self, stopping: asyncio.Event | None = None) -> bool:
        """Take one import and carry it out; False when there was none to take."""
        async with self.uow() as uow:
            job = await uow.order_imports.claim(
                self.owner, self.settings.lease_seconds, self.clock()
            )
            await uow.commit()
        if job is None:
            return False
        log.info("order import taken", order_import=job.import_id, checkpoint=job.checkpoint)
        with metrics.job_round("order-import"):
            try:
                await self.run(job, stopping or asyncio.Event())
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if outage(error):
                    raise
                reference = error_reference()
                log.exception(
                    "order import failed", order_import=job.import_id, reference=reference
                )
                await self._end(
                    job,
                    Failure(
                        "IMPORT_ERROR",
                        f"the import stopped on an unexpected error (reference {reference})",
                        {"reference": reference},
                    ),
                )
        return True

    # --- one import ---------------------------------------------------------------------------
    async def run(self, job: OrderImport, stopping: asyncio.Event) -> None:
        if job.cancel_requested:
            await self._end(job, None)
            return
        source = self.reader(job.spec, job.created_at, self.settings.time_zone)
        # The feed hands rows over without looking at them (only `number`, read here).
        async with RowFeed(
            cast(RowSource, source), lambda seq: self._part(job.import_id, seq)
        ) as feed:
            await self._chunks(job, feed, stopping)

    async def _chunks(self, job: OrderImport, feed: RowFeed, stopping: asyncio.Event) -> None:
        pending: list[OrderRow] = []
        bytes_read, done, problem = 0, False, None
        renewed = time.monotonic()
        current: OrderImport | None = job
        chunk_rows = self.settings.order_chunk_rows
        while current is not None and current.running:
            want = current.first_chunk_rows(chunk_rows)
            while len(pending) < want and not done:
                batch, bytes_read, signal = await feed.next()
                rows = cast(list[OrderRow], batch)
                pending += [r for r in rows if r.number > current.checkpoint]
                done = signal is not None
                problem = signal if isinstance(signal, BaseException) else None
                if not pending and time.monotonic() - renewed > self.settings.lease_seconds / 3:
                    if not await self._renew(current):
                        return
                    renewed = time.monotonic()
            chunk, pending = pending[:want], pending[want:]
            if problem is not None and not chunk:
                await self._end(current, _failure_of(problem))
                return
            last = done and problem is None and not pending
            current = await self._chunk(current, chunk, bytes_read, last=last)
            renewed = time.monotonic()
            if current is not None and current.running and stopping.is_set():
                await self._release(current)
                return

    async def _chunk(
        self, job: OrderImport, rows: list[OrderRow], bytes_read: int, *, last: bool
    ) -> OrderImport | None:
        for attempt in range(1, CHUNK_ATTEMPTS + 1):
            try:
                async with self.uow() as uow:
                    current = await uow.order_imports.get(job.import_id, lock=True)
                    if current is None or not current.running or current.lease_owner != self.owner:
                        log.info("order import taken over", order_import=job.import_id)
                        return None
                    counts = await order_imports.import_chunk(
                        uow, current, rows, bytes_read, self.clock(), last=last
                    )
                    if current.running:
                        await uow.order_imports.renew(
                            current.import_id, self.owner, self.settings.lease_seconds
                        )
                    if self.before_commit is not None:
                        await self.before_commit(current)
                    await uow.commit()
            except (DBAPIError, asyncpg.PostgresError, Aborted) as error:
                transient = isinstance(error, Aborted) or is_transient_conflict(error)
                if attempt == CHUNK_ATTEMPTS or not transient:
                    raise
                log.info("order import chunk met a concurrent change; again", attempt=attempt)
                continue
            self._count(current.unit, counts)
            if not current.running:
                log.info(
                    "order import ended",
                    order_import=current.import_id,
                    state=current.state.value,
                    rows_read=current.counts.rows_read,
                )
            return current
        return None

    async def _end(self, job: OrderImport, failure: Failure | None) -> None:
        """End an import this replica holds: FAILED with `failure`, else CANCELLED."""
        async with self.uow() as uow:
            current = await uow.order_imports.get(job.import_id, lock=True)
            if current is None or not current.running or current.lease_owner != self.owner:
                return
            if failure is None:
                current.cancel(self.clock())
            else:
                current.fail(failure, self.clock())
            await order_imports.ended(uow, current)
            await uow.commit()
        log.info("order import ended", order_import=job.import_id, state=current.state.value)

    async def _renew(self, job: OrderImport) -> bool:
        async with self.uow() as uow:
            held = await uow.order_imports.renew(
                job.import_id, self.owner, self.settings.lease_seconds
            )
            await uow.commit()
        return held

    async def _release(self, job: OrderImport) -> None:
        async with self.uow() as uow:
            await uow.order_imports.release(job.import_id, self.owner)
            await uow.commit()

    async def _part(self, import_id: str, seq: int) -> bytes | None:
        async with self.uow(read_only=True) as uow:
            return await uow.order_imports.part(import_id, seq)

    @staticmethod
    def _count(unit: str, counts: OrderCounts) -> None:
        for name in ("imported", "unknown_member", "duplicates", "rejected"):
            rows = getattr(counts, name)
            if rows:
                metrics.add(ROWS, ROWS_HELP, {"unit": unit, "outcome": name}, rows)


def _failure_of(problem: BaseException) -> Failure:
    if isinstance(problem, ImportFileError):
        return Failure(problem.reason, problem.detail)
    raise problem
