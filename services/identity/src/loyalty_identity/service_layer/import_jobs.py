"""Carrying out imports of any kind, in every replica (member imports: `import_worker.py`,
order imports: `order_import_worker.py`): a worker takes a RUNNING import nobody holds (or whose
holder's lease ran out: a replica that died), reads its file through the kind's file reader and
imports its rows chunk by chunk, each chunk in one transaction that also renews the lease and
moves the checkpoint. A replica killed mid-chunk leaves that chunk uncommitted; whichever
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
import dataclasses
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import asyncpg
from loyalty_kit import metrics
from loyalty_kit.clock import Clock
from loyalty_kit.errors import Aborted
from loyalty_kit.idempotency import is_transient_conflict
from loyalty_kit.jobs import outage
from loyalty_kit.logs import get_logger
from loyalty_kit.status import error_reference
from sqlalchemy.exc import DBAPIError

from loyalty_identity.adapters.import_operations import OperationStore
from loyalty_identity.adapters.row_process import WorkerLost, prepared
from loyalty_identity.domain.import_operation import Failure, ImportOperation
from loyalty_identity.domain.imports import ImportFileError
from loyalty_identity.service_layer.uow import IdentityUnitOfWork
from loyalty_identity.settings import ImportSettings

T = TypeVar("T")
Job = TypeVar("Job", bound=ImportOperation[Any, Any])
Ahead = TypeVar("Ahead")
FEED_BATCH = 1000  # rows the reader's thread hands over at a time
FEED_DEPTH = 4  # batches waiting at most


class NumberedRow(Protocol):
    @property
    def number(self) -> int: ...


Row = TypeVar("Row", bound=NumberedRow)
Row_co = TypeVar("Row_co", bound=NumberedRow, covariant=True)


class RowSource(Protocol[Row_co]):
    """A kind's file reader as the worker uses it (e.g. `domain/import_file.FileReader`)."""

    @property
    def bytes_read(self) -> int: ...

    def rows(self, parts: Iterable[bytes]) -> Iterator[Row_co]: ...


class _Stopped(Exception):
    """The feed was closed: the reader's thread ends."""


class _End:
    """The file was read to its end."""


END = _End()


class RowFeed(Generic[Row]):
    """The file reader in a thread of its own, fed the file's parts by `part(seq)` (None past
    the last) and handing back (rows, bytes read so far, END / an error / None) batches."""

    def __init__(
        self, reader: RowSource[Row], part: Callable[[int], Coroutine[Any, Any, bytes | None]]
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
        rows = self.reader.rows(self._parts())
        try:
            for row in rows:
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
        finally:
            close = getattr(rows, "close", None)  # a reader's worker process ends with it
            if close is not None:
                close()

    async def __aenter__(self) -> RowFeed[Row]:
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


class ProcessSlots:
    """How many imports a replica may read in worker processes at once (the setting
    `prepare_processes`); an import that finds none free is read in the service's process."""

    def __init__(self, processes: int) -> None:
        self.free = processes
        self.in_use = 0

    @contextlib.contextmanager
    def take(self) -> Iterator[bool]:
        """Whether this import has a worker process, until the block ends."""
        taken = self.free > 0
        self.free -= taken
        self.in_use += taken
        try:
            yield taken
        finally:
            self.free += taken
            self.in_use -= taken


class _Reading(Generic[Row]):
    """Where an import's reading stands: the rows read past the checkpoint and not yet in a
    chunk, the bytes read, whether the reader is done (and what stopped it)."""

    def __init__(self, feed: RowFeed[Row], checkpoint: int) -> None:
        self.feed = feed
        self.checkpoint = checkpoint
        self.pending: list[Row] = []
        self.bytes_read = 0
        self.done = False
        self.problem: BaseException | None = None
        self.renewed = time.monotonic()


@dataclasses.dataclass(frozen=True)
class _Taken(Generic[Row, Ahead]):
    """A chunk taken from the reader: its rows, the bytes read with it, whether it is the
    file's last, what stopped the reader (if it did) and what was looked up ahead."""

    rows: list[Row]
    bytes_read: int
    last: bool
    problem: BaseException | None
    ahead: Ahead | None


class ImportJobs(Generic[Job, Row, T, Ahead]):
    """Takes a kind's imports and carries them out, one at a time (a replica runs `workers` of
    these). A kind names itself (`kind`: "member import"), its store in the unit of work, its
    chunk size, its file reader, what it looks up of a chunk ahead of its transaction
    (`Ahead`, `look_ahead`) and what a chunk does (`T`: a chunk's counts)."""

    kind: ClassVar[str]
    logger: ClassVar[str]
    chunk_attempts: ClassVar[int]

    def __init__(
        self,
        uow: Callable[..., IdentityUnitOfWork],
        settings: ImportSettings,
        clock: Clock,
        *,
        owner: str = "",
        processes: ProcessSlots | None = None,
    ) -> None:
        self.uow = uow
        self.processes = processes or ProcessSlots(settings.prepare_processes)
        self.settings = settings
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.wake = asyncio.Event()
        self.log = get_logger(self.logger)
        # A fault hook for tests: awaited inside each chunk's transaction, before its commit.
        self.before_commit: Callable[[Job], Awaitable[None]] | None = None

    # --- what a kind says ---------------------------------------------------------------------
    @property
    def _key(self) -> str:
        return self.kind.replace(" ", "_")

    def store(self, uow: IdentityUnitOfWork) -> OperationStore[Job]:
        raise NotImplementedError

    def chunk_rows(self) -> int:
        raise NotImplementedError

    async def source(self, job: Job, in_process: bool) -> RowSource[Row]:
        """The import's file reader: in a worker process of its own when `in_process`."""
        raise NotImplementedError

    async def look_ahead(self, job: Job, rows: Sequence[Row]) -> Ahead | None:
        """What a kind finds out about a chunk's rows before its transaction, in a unit of
        work of its own (read-only, committed data), while the chunk before is being written;
        handed to `import_chunk` (None: nothing, the chunk looks everything up itself)."""
        return None

    async def import_chunk(
        self,
        uow: IdentityUnitOfWork,
        job: Job,
        rows: Sequence[Row],
        bytes_read: int,
        *,
        last: bool,
        ahead: Ahead | None,
    ) -> T:
        raise NotImplementedError

    async def ended(self, uow: IdentityUnitOfWork, job: Job) -> None:
        raise NotImplementedError

    def count(self, unit: str, counts: T) -> None:
        raise NotImplementedError

    def _said(self, message: str, job: Job, **fields: Any) -> None:
        self.log.info(f"{self.kind} {message}", **{self._key: job.import_id}, **fields)

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
                    self.log.warning(
                        f"{self.kind}s: unavailable; retrying", error=type(error).__name__
                    )
                else:
                    self.log.exception(f"{self.kind}s failed; retrying")
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
            job = await self.store(uow).claim(self.owner, self.settings.lease_seconds, self.clock())
            await uow.commit()
        if job is None:
            return False
        self._said("taken", job, checkpoint=job.checkpoint)
        with metrics.job_round(self.kind.replace(" ", "-")):
            try:
                await self.run(job, stopping or asyncio.Event())
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if outage(error):
                    raise  # the lease runs out; this replica or another carries on after
                reference = error_reference()
                # The error's type and where it was raised, never its text: an error met
                # reading a row may quote the row's values (personal data).
                self.log.error(
                    f"{self.kind} failed",
                    **{self._key: job.import_id},
                    reference=reference,
                    error=getattr(error, "error_type", type(error).__name__),
                    at=_where(error),
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
    async def run(self, job: Job, stopping: asyncio.Event) -> None:
        if job.cancel_requested:
            await self._end(job, None)
            return
        with self.processes.take() as in_process:
            try:
                await self._read(job, in_process, stopping)
                return
            except WorkerLost as lost:
                if not in_process:
                    raise
                self.log.warning(
                    f"{self.kind} reader's worker process lost; reading in this process",
                    **{self._key: job.import_id},
                    exitcode=lost.exitcode,
                )
        # Carried on from the checkpoint the last chunk committed (rows read ahead by the lost
        # process but not committed are read again), as a replica taking the import over would.
        async with self.uow(read_only=True) as uow:
            current = await self.store(uow).get(job.import_id)
        if current is None or not current.running or current.lease_owner != self.owner:
            return
        await self._read(current, False, stopping)

    async def _read(self, job: Job, in_process: bool, stopping: asyncio.Event) -> None:
        source = await self.source(job, in_process)
        async with RowFeed(source, lambda seq: self._part(job.import_id, seq)) as feed:
            await self._chunks(job, feed, stopping)

    async def _chunks(self, job: Job, feed: RowFeed[Row], stopping: asyncio.Event) -> None:
        """The import's chunks one after the other, each in its transaction (`_chunk`); while
        one is written, the next is taken from the reader and looked ahead (`look_ahead`), so
        the next chunk's look-ups run on another connection beside this chunk's statements."""
        reading = _Reading(feed, job.checkpoint)
        current: Job | None = job
        taken = await self._take(reading, job, job.first_chunk_rows(self.chunk_rows()))
        following: asyncio.Future[_Taken[Row, Ahead] | None] | None = None
        try:
            while taken is not None and current is not None and current.running:
                if taken.problem is not None and not taken.rows:
                    await self._end(current, _failure_of(taken.problem))
                    return
                if not taken.last:
                    # Every chunk after the first takes the full size (`first_chunk_rows`).
                    following = asyncio.ensure_future(
                        self._take(reading, current, self.chunk_rows())
                    )
                current = await self._chunk(
                    current, taken.rows, taken.bytes_read, last=taken.last, ahead=taken.ahead
                )
                if current is not None and current.running and stopping.is_set():
                    await self._release(current)  # another replica carries on at once
                    return
                if following is None or current is None or not current.running:
                    return
                taken, following = await following, None
        finally:
            if following is not None:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await following

    async def _take(self, reading: _Reading[Row], job: Job, want: int) -> _Taken[Row, Ahead] | None:
        """The next chunk's rows (up to `want`) from the reader, looked ahead; None when this
        replica lost the import while skipping rows up to the checkpoint."""
        while len(reading.pending) < want and not reading.done:
            batch, reading.bytes_read, signal = await reading.feed.next()
            reading.pending += [r for r in batch if r.number > reading.checkpoint]
            reading.done = signal is not None
            reading.problem = signal if isinstance(signal, BaseException) else None
            if (
                not reading.pending
                and time.monotonic() - reading.renewed > self.settings.lease_seconds / 3
            ):
                # Rows up to the checkpoint, read again after a takeover: still holding it.
                if not await self._renew(job):
                    return None
                reading.renewed = time.monotonic()
        rows, reading.pending = reading.pending[:want], reading.pending[want:]
        last = reading.done and reading.problem is None and not reading.pending
        ahead = await self.look_ahead(job, rows) if rows else None
        reading.renewed = time.monotonic()
        return _Taken(rows, reading.bytes_read, last, reading.problem, ahead)

    async def _chunk(
        self, job: Job, rows: list[Row], bytes_read: int, *, last: bool, ahead: Ahead | None
    ) -> Job | None:
        """One chunk in one transaction (run again after a conflict with a concurrent change
        of the same members); the import after it, or None if this replica no longer holds
        it."""
        for attempt in range(1, self.chunk_attempts + 1):
            try:
                async with self.uow() as uow:
                    store = self.store(uow)
                    current = await store.get(job.import_id, lock=True)
                    if current is None or not current.running or current.lease_owner != self.owner:
                        self._said("taken over", job)
                        return None
                    store.remember_indexes(prepared(rows))
                    counts = await self.import_chunk(
                        uow, current, rows, bytes_read, last=last, ahead=ahead
                    )
                    if current.running:
                        await store.renew(
                            current.import_id, self.owner, self.settings.lease_seconds
                        )
                    if self.before_commit is not None:
                        await self.before_commit(current)
                    await uow.commit()
            except (DBAPIError, asyncpg.PostgresError, Aborted) as error:
                transient = isinstance(error, Aborted) or is_transient_conflict(error)
                if attempt == self.chunk_attempts or not transient:
                    raise
                self.log.info(f"{self.kind} chunk met a concurrent change; again", attempt=attempt)
                continue
            self.count(current.unit, counts)
            if not current.running:
                self._said(
                    "ended", current, state=current.state.value, rows_read=current.counts.rows_read
                )
            return current
        return None

    async def _end(self, job: Job, failure: Failure | None) -> None:
        """End an import this replica holds: FAILED with `failure`, else CANCELLED."""
        async with self.uow() as uow:
            current = await self.store(uow).get(job.import_id, lock=True)
            if current is None or not current.running or current.lease_owner != self.owner:
                return
            if failure is None:
                current.cancel(self.clock())
            else:
                current.fail(failure, self.clock())
            await self.ended(uow, current)
            await uow.commit()
        self._said("ended", job, state=current.state.value)

    async def _renew(self, job: Job) -> bool:
        async with self.uow() as uow:
            held = await self.store(uow).renew(
                job.import_id, self.owner, self.settings.lease_seconds
            )
            await uow.commit()
        return held

    async def _release(self, job: Job) -> None:
        async with self.uow() as uow:
            await self.store(uow).release(job.import_id, self.owner)
            await uow.commit()

    async def _part(self, import_id: str, seq: int) -> bytes | None:
        async with self.uow(read_only=True) as uow:
            return await self.store(uow).part(import_id, seq)


def _where(error: BaseException) -> list[str]:
    """The frames an error passed through (file, line, function): its code, not its data."""
    return [
        f"{frame.filename}:{frame.lineno} {frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)
    ]


def _failure_of(problem: BaseException) -> Failure:
    if isinstance(problem, ImportFileError):
        return Failure(problem.reason, problem.detail)
    raise problem
