"""An import as a long-running operation, whatever it brings in (pure: no I/O): the states,
the checkpoint and lease, progress and its estimate, cancelling, and the stop of a mostly bad
file. A member import (`member_import.MemberImport`) and an order import
(`order_import.OrderImport`) are this over their own spec and counters.

An import is RUNNING from the moment its file is stored until every row is read (SUCCEEDED), an
error stops it (FAILED: the file cannot be read, or most of it is refused) or an operator
cancels it (CANCELLED). Its rows are processed in chunks; each committed chunk moves the
checkpoint (the number of its last row) and the counters, so whichever replica carries on after
a crash starts after the checkpoint: no row twice, none lost. What was imported stays whatever
the end.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Generic, Protocol, Self, TypeVar

from loyalty_kit.errors import FailedPrecondition

from loyalty_identity.domain.import_spec import DEFAULT_MAX_REJECTED_PERCENT

FIRST_CHUNK_ROWS = 1_000  # a mostly bad file is judged on its first 1,000 rows


class ImportState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Failure:
    """Why an import stopped (a reason code, the reason in words, and figures: no personal
    data)."""

    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    percent: float
    rows_per_second: float
    eta_seconds: int


class ImportCounts(Protocol):
    """A kind's counters: what its rows came to; `rows_read` is their sum."""

    rejected: int

    @property
    def rows_read(self) -> int: ...

    def plus(self, other: Self) -> Self: ...


class ImportSpecBase(Protocol):
    """What the operation reads of a kind's spec."""

    @property
    def unit(self) -> str: ...

    @property
    def keep_file(self) -> bool: ...

    @property
    def max_rejected_percent(self) -> int: ...


S = TypeVar("S", bound=ImportSpecBase)
C = TypeVar("C", bound=ImportCounts)


@dataclass
class ImportOperation(Generic[S, C]):
    """The operation; a kind sets `collection` (its resource names' prefix), `ended_error` (what
    refuses a change to an ended one) and its counts' default."""

    collection: ClassVar[str]
    ended_error: ClassVar[type[FailedPrecondition]]

    import_id: str
    spec: S
    created_by: str  # the API client that created it
    request_id: str
    created_at: datetime
    updated_at: datetime
    fingerprint: str = ""  # of the request that created it: a retry must ask the same
    file_bytes: int = 0
    file_sha256: str = ""
    file_kept: bool = True  # the file is stored (until the import ends, unless spec.keep_file)
    state: ImportState = ImportState.RUNNING
    counts: C = field(default=None)  # type: ignore[assignment]  # each kind's default
    checkpoint: int = 0  # the number of the last row of the last committed chunk
    bytes_read: int = 0
    failure: Failure | None = None
    cancel_requested: bool = False
    started_at: datetime | None = None  # when a replica first took it
    ended_at: datetime | None = None
    lease_owner: str = ""
    leased_until: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.collection}{self.import_id}"

    @property
    def unit(self) -> str:
        return self.spec.unit

    @property
    def running(self) -> bool:
        return self.state is ImportState.RUNNING

    # --- progress -----------------------------------------------------------------------------
    def progress(self, now: datetime) -> Progress:
        """Percent of the file read, rows a second over its running time, and the seconds left
        at the rate the file is being read (0 once ended or while unknown)."""
        if self.state is ImportState.SUCCEEDED:
            percent = 100.0
        elif self.file_bytes:
            percent = min(100.0, round(self.bytes_read * 100 / self.file_bytes, 2))
        else:
            percent = 0.0
        started = self.started_at
        until = self.ended_at or now
        seconds = (until - started).total_seconds() if started else 0.0
        rate = self.counts.rows_read / seconds if seconds > 0 else 0.0
        eta = 0
        if self.running and seconds > 0 and self.bytes_read > 0:
            per_byte = seconds / self.bytes_read
            eta = max(0, round((self.file_bytes - self.bytes_read) * per_byte))
        return Progress(percent, round(rate, 1), eta)

    # --- the chunks ---------------------------------------------------------------------------
    def first_chunk_rows(self, chunk_rows: int) -> int:
        """How many rows the next chunk takes: the first at most 1,000, so a mostly bad file
        is judged before anything of it is written."""
        return min(chunk_rows, FIRST_CHUNK_ROWS) if self.counts.rows_read == 0 else chunk_rows

    def mostly_rejected(self) -> Failure | None:
        """Whether the rows read are mostly refused: more than the spec's percentage (checked
        after every chunk, the first being the first 1,000 rows)."""
        total = self.counts
        limit = self.spec.max_rejected_percent or DEFAULT_MAX_REJECTED_PERCENT
        if total.rows_read == 0 or total.rejected * 100 <= limit * total.rows_read:
            return None
        return Failure(
            "MOSTLY_REJECTED",
            f"{total.rejected} of the first {total.rows_read} rows were refused (more than "
            f"{limit}%): the import stopped; the report says why each was refused",
            {
                "rows_read": str(total.rows_read),
                "rejected": str(total.rejected),
                "max_rejected_percent": str(limit),
            },
        )

    def advance(self, chunk: C, last_row: int, bytes_read: int, now: datetime) -> None:
        """A chunk committed: its rows counted, the checkpoint moved to its last row."""
        self.ensure_running()
        self.counts = self.counts.plus(chunk)
        self.checkpoint = max(self.checkpoint, last_row)
        self.bytes_read = max(self.bytes_read, bytes_read)
        self.updated_at = now

    def finish_chunk(self, last: bool, bytes_read: int, now: datetime) -> None:
        """After a chunk: the import ends when most of it was refused, the file is read
        (`last`) or an operator asked it to stop."""
        failure = self.mostly_rejected()
        if failure is not None:
            self.fail(failure, now)
        elif last:
            self.succeed(bytes_read, now)
        elif self.cancel_requested:
            self.cancel(now)

    def read_to(self, bytes_read: int, now: datetime) -> None:
        """Rows up to the checkpoint read again after a takeover: only the bytes move."""
        self.bytes_read = max(self.bytes_read, bytes_read)
        self.updated_at = now

    # --- the end ------------------------------------------------------------------------------
    def ensure_running(self) -> None:
        if not self.running:
            raise self.ended_error(self.import_id, self.state)  # type: ignore[call-arg]

    def succeed(self, bytes_read: int, now: datetime) -> None:
        self.ensure_running()
        self.bytes_read = max(self.bytes_read, bytes_read)
        self._end(ImportState.SUCCEEDED, now)

    def fail(self, failure: Failure, now: datetime) -> None:
        self.ensure_running()
        self.failure = failure
        self._end(ImportState.FAILED, now)

    def request_cancel(self, now: datetime, *, taken: bool) -> None:
        """An operator cancels: at once when no replica is processing it (`taken` False),
        else the replica stops after its chunk. Cancelling a cancelled import changes
        nothing; one that ended otherwise cannot be."""
        if self.state is ImportState.CANCELLED:
            return
        self.ensure_running()
        self.cancel_requested = True
        self.updated_at = now
        if not taken:
            self.cancel(now)

    def held_at(self, now: datetime) -> bool:
        """Whether a replica holds it (its lease has not run out)."""
        return bool(self.lease_owner) and self.leased_until is not None and self.leased_until > now

    def cancel(self, now: datetime) -> None:
        self.ensure_running()
        self._end(ImportState.CANCELLED, now)

    def _end(self, state: ImportState, now: datetime) -> None:
        self.state = state
        self.ended_at = self.updated_at = now
        self.lease_owner, self.leased_until = "", None
        if not self.spec.keep_file:
            self.file_kept = False
