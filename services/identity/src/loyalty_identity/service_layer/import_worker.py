"""Carrying out member imports, in every replica: a worker takes a RUNNING import nobody holds
(or whose holder's lease ran out: a replica that died), reads its file through the file reader
and imports its rows chunk by chunk, each chunk in one transaction that also renews the lease
and moves the checkpoint. A replica killed mid-chunk leaves that chunk uncommitted; whichever
replica takes the import next reads the file again from the start, skips the rows up to the
checkpoint and carries on: no row twice, none lost.

The file reader is synchronous and streaming; it runs in a thread (`RowFeed`) that is handed
the file's parts one at a time from the database and hands back rows in small batches, so a
replica holds a few batches of rows and one part of the file, whatever the file's size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar
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

from loyalty_identity.domain.identities import IdentityType
from loyalty_identity.domain.import_file import FileReader
from loyalty_identity.domain.imports import ImportFileError, ImportSpec, ParsedRow, RejectedRow
from loyalty_identity.domain.member_import import Counts, Failure, MemberImport
from loyalty_identity.service_layer import imports
from loyalty_identity.service_layer.uow import IdentityUnitOfWork
from loyalty_identity.settings import ImportSettings

log = get_logger("loyalty.identity.imports")

T = TypeVar("T")
Row = ParsedRow | RejectedRow
CHUNK_ATTEMPTS = 5  # a chunk that met a concurrent registration runs again, this often at most
FEED_BATCH = 1000  # rows the reader's thread hands over at a time
FEED_DEPTH = 4  # batches waiting at most
ROWS = "loyalty_member_import_rows"
ROWS_HELP = "Rows of member imports committed, by unit and outcome."


class RowSource(Protocol):
    """The file reader as the worker uses it (`domain/import_file.FileReader`)."""

    @property
    def bytes_read(self) -> int: ...

    def rows(self, parts: Iterable[bytes]) -> Iterator[Row]: ...


ReaderFactory = Callable[[ImportSpec, Mapping[str, IdentityType], datetime, str], RowSource]


def file_reader(
    spec: ImportSpec, types: Mapping[str, IdentityType], now: datetime, time_zone: str
) -> RowSource:
    reader: RowSource = FileReader(spec, types, now=now, time_zone=ZoneInfo(time_zone))
    return reader


class _Stopped(Exception):
    """The feed was closed: the reader's thread ends."""


class _End:
    """The file was read to its end."""


END = _End()


class RowFeed:
    """The file reader in a thread of its own, fed the file's parts by `part(seq)` (None past
    the last) and handing back (rows, bytes read so far, END / an error / None) batches."""

    def __init__(
        self, reader: RowSource, part: Callable[[int], Coroutine[Any, Any, bytes | None]]
    ) -> None:
        self.reader = reader
        self.part = part
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[list[Row], int, object]] = asyncio.Queue(FEED_DEPTH)
        self.stop = threading.Event()
        self._thread: asyncio.Future[None] | None = None

    def _wait(self, work: Coroutine[Any, Any, T]) -> T:
        """In the thread: `work` run on the event loop, waited for until the feed is closed."""
        future = asyncio.run_coroutine_threadsafe(work, self.loop)
        while True:
            try:
                return future.result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                if self.stop.is_set():
                    future.cancel()
                    raise _Stopped from None

    def _parts(self) -> Iterator[bytes]:
        seq = 0
        while not self.stop.is_set():
            part = self._wait(self.part(seq))
            if part is None:
                return
            yield part
            seq += 1
        raise _Stopped

    def _run(self) -> None:
        batch: list[Row] = []
        try:
            for row in self.reader.rows(self._parts()):
                batch.append(row)
                if len(batch) >= FEED_BATCH:
                    self._wait(self.queue.put((batch, self.reader.bytes_read, None)))
                    batch = []
            self._wait(self.queue.put((batch, self.reader.bytes_read, END)))
        except _Stopped:
            return
        except Exception as error:  # the file cannot be read (or the reader failed)
            with contextlib.suppress(_Stopped):
                self._wait(self.queue.put((batch, self.reader.bytes_read, error)))

    async def __aenter__(self) -> RowFeed:
        self._thread = asyncio.ensure_future(asyncio.to_thread(self._run))
        return self

    async def __aexit__(self, *_: object) -> None:
        self.stop.set()
        while not self.queue.empty():  # a put the thread waits on completes; it then stops
            self.queue.get_nowait()
        if self._thread is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._thread), 5)

    async def next(self) -> tuple[list[Row], int, object]:
        return await self.queue.get()


class ImportWorker:
    """Takes imports and carries them out, one at a time (a replica runs `workers` of these)."""

    def __init__(
        self,
        uow: Callable[..., IdentityUnitOfWork],
        settings: ImportSettings,
        clock: Clock,
        *,
        reader: ReaderFactory = file_reader,
        owner: str = "",
    ) -> None:
        self.uow = uow
        self.settings = settings
        self.clock = clock
        self.reader = reader
        self.owner = owner or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.wake = asyncio.Event()
        # A fault hook for tests: awaited inside each chunk's transaction, before its commit.
        self.before_commit: Callable[[MemberImport], Awaitable[None]] | None = None

    # --- the loop ---------------------------------------------------------------------------
    async def serve(self, stopping: asyncio.Event) -> None:
        """Take imports while there are any; then wait to be woken (an upload here) or for
        `poll_seconds` (imports created elsewhere or left by a replica that stopped)."""
        while not stopping.is_set():
            self.wake.clear()
            try:
                while not stopping.is_set() and await self.run_next(stopping):
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if outage(error):
                    log.warning("member imports: unavailable; retrying", error=type(error).__name__)
                else:
                    log.exception("member imports failed; retrying")
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
        """Take one import and carry it out (to its end, until another replica took it over,
        or until the service stops); False when there was none to take."""
        async with self.uow() as uow:
            job = await uow.imports.claim(self.owner, self.settings.lease_seconds, self.clock())
            await uow.commit()
        if job is None:
            return False
        log.info("member import taken", member_import=job.import_id, checkpoint=job.checkpoint)
        with metrics.job_round("member-import"):
            try:
                await self.run(job, stopping or asyncio.Event())
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if outage(error):
                    raise  # the lease runs out; this replica or another carries on after
                reference = error_reference()
                log.exception(
                    "member import failed", member_import=job.import_id, reference=reference
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
    async def run(self, job: MemberImport, stopping: asyncio.Event) -> None:
        if job.cancel_requested:
            await self._end(job, None)
            return
        async with self.uow(read_only=True) as uow:
            types = await uow.members.identity_types()
        source = self.reader(job.spec, types, job.created_at, self.settings.time_zone)
        async with RowFeed(source, lambda seq: self._part(job.import_id, seq)) as feed:
            await self._chunks(job, feed, stopping)

    async def _chunks(self, job: MemberImport, feed: RowFeed, stopping: asyncio.Event) -> None:
        pending: list[Row] = []
        bytes_read, done, problem = 0, False, None
        renewed = time.monotonic()
        current: MemberImport | None = job
        while current is not None and current.running:
            want = current.first_chunk_rows(self.settings.chunk_rows)
            while len(pending) < want and not done:
                batch, bytes_read, signal = await feed.next()
                pending += [r for r in batch if r.number > current.checkpoint]
                done = signal is not None
                problem = signal if isinstance(signal, BaseException) else None
                if not pending and time.monotonic() - renewed > self.settings.lease_seconds / 3:
                    # Rows up to the checkpoint, read again after a takeover: still holding it.
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
                await self._release(current)  # another replica carries on at once
                return

    async def _chunk(
        self, job: MemberImport, rows: list[Row], bytes_read: int, *, last: bool
    ) -> MemberImport | None:
        """One chunk in one transaction (run again after a conflict with a concurrent change
        of the same members); the import after it, or None if this replica no longer holds
        it."""
        for attempt in range(1, CHUNK_ATTEMPTS + 1):
            try:
                async with self.uow() as uow:
                    current = await uow.imports.get(job.import_id, lock=True)
                    if current is None or not current.running or current.lease_owner != self.owner:
                        log.info("member import taken over", member_import=job.import_id)
                        return None
                    counts = await imports.import_chunk(
                        uow, current, rows, bytes_read, self.clock(), last=last
                    )
                    if current.running:
                        await uow.imports.renew(
                            current.import_id, self.owner, self.settings.lease_seconds
                        )
                    if self.before_commit is not None:
                        await self.before_commit(current)
                    await uow.commit()
            except (DBAPIError, asyncpg.PostgresError, Aborted) as error:
                transient = isinstance(error, Aborted) or is_transient_conflict(error)
                if attempt == CHUNK_ATTEMPTS or not transient:
                    raise
                log.info("member import chunk met a concurrent change; again", attempt=attempt)
                continue
            self._count(current.unit, counts)
            if not current.running:
                log.info(
                    "member import ended",
                    member_import=current.import_id,
                    state=current.state.value,
                    rows_read=current.counts.rows_read,
                )
            return current
        return None

    async def _end(self, job: MemberImport, failure: Failure | None) -> None:
        """End an import this replica holds: FAILED with `failure`, else CANCELLED."""
        async with self.uow() as uow:
            current = await uow.imports.get(job.import_id, lock=True)
            if current is None or not current.running or current.lease_owner != self.owner:
                return
            if failure is None:
                current.cancel(self.clock())
            else:
                current.fail(failure, self.clock())
            await imports.ended(uow, current)
            await uow.commit()
        log.info("member import ended", member_import=job.import_id, state=current.state.value)

    async def _renew(self, job: MemberImport) -> bool:
        async with self.uow() as uow:
            held = await uow.imports.renew(job.import_id, self.owner, self.settings.lease_seconds)
            await uow.commit()
        return held

    async def _release(self, job: MemberImport) -> None:
        async with self.uow() as uow:
            await uow.imports.release(job.import_id, self.owner)
            await uow.commit()

    async def _part(self, import_id: str, seq: int) -> bytes | None:
        async with self.uow(read_only=True) as uow:
            return await uow.imports.part(import_id, seq)

    @staticmethod
    def _count(unit: str, counts: Counts) -> None:
        for outcome, rows in counts.by_outcome().items():
            if rows:
                metrics.add(ROWS, ROWS_HELP, {"unit": unit, "outcome": outcome.value}, rows)


def _failure_of(problem: BaseException) -> Failure:
    if isinstance(problem, ImportFileError):
        return Failure(problem.reason, problem.detail)
    raise problem
