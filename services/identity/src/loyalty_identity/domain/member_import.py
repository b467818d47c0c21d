"""An import of a unit's legacy members as a long-running operation, and its merge candidates
(pure: no I/O).

An import is RUNNING from the moment its file is stored until every row is read (SUCCEEDED), an
error stops it (FAILED: the file cannot be read, or most of it is refused) or an operator
cancels it (CANCELLED). Its rows are processed in chunks; each committed chunk moves the
checkpoint (the number of its last row) and the counters, so whichever replica carries on after
a crash starts after the checkpoint: no row twice, none lost. What was imported stays whatever
the end.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from loyalty_kit.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)

from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.import_spec import DEFAULT_MAX_REJECTED_PERCENT
from loyalty_identity.domain.imports import (
    ImportSpec,
    ParsedRow,
    RowOutcome,
)

FIRST_CHUNK_ROWS = 1_000  # a mostly bad file is judged on its first 1,000 rows
IMPORTS = "memberImports/"
CANDIDATES = "mergeCandidates/"


class ImportState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CandidateState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


def import_name(import_id: str) -> str:
    return f"{IMPORTS}{import_id}"


def candidate_name(candidate_id: str) -> str:
    return f"{CANDIDATES}{candidate_id}"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Counts:
    """How many rows came to what; `rows_read` is their sum."""

    created: int = 0
    linked: int = 0
    unchanged: int = 0
    candidates: int = 0
    merged: int = 0
    rejected: int = 0
    legacy_points: int = 0  # carried over, in the unit's legacy points

    _FIELDS: ClassVar[dict[RowOutcome, str]] = {
        RowOutcome.CREATED: "created",
        RowOutcome.LINKED: "linked",
        RowOutcome.UNCHANGED: "unchanged",
        RowOutcome.MERGE_CANDIDATE: "candidates",
        RowOutcome.MERGED: "merged",
        RowOutcome.REJECTED: "rejected",
    }

    @property
    def rows_read(self) -> int:
        return sum(getattr(self, name) for name in self._FIELDS.values())

    def count(self, outcome: RowOutcome, legacy_points: int = 0) -> None:
        name = self._FIELDS[outcome]
        setattr(self, name, getattr(self, name) + 1)
        self.legacy_points += legacy_points

    def add(self, rows: Mapping[RowOutcome, int], legacy_points: int = 0) -> None:
        """Rows counted elsewhere, by outcome (a chunk's, counted in a loop of its own)."""
        for outcome, name in self._FIELDS.items():
            if rows.get(outcome):
                setattr(self, name, getattr(self, name) + rows[outcome])
        self.legacy_points += legacy_points

    def plus(self, other: Counts) -> Counts:
        return Counts(
            **{
                name: getattr(self, name) + getattr(other, name)
                for name in (*self._FIELDS.values(), "legacy_points")
            }
        )

    def by_outcome(self) -> dict[RowOutcome, int]:
        return {outcome: getattr(self, name) for outcome, name in self._FIELDS.items()}


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


@dataclass
class MemberImport:
    import_id: str
    spec: ImportSpec
    created_by: str  # the API client that created it
    request_id: str
    created_at: datetime
    updated_at: datetime
    fingerprint: str = ""  # of the request that created it: a retry must ask the same
    file_bytes: int = 0
    file_sha256: str = ""
    file_kept: bool = True  # the file is stored (until the import ends, unless spec.keep_file)
    state: ImportState = ImportState.RUNNING
    counts: Counts = field(default_factory=Counts)
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
        return import_name(self.import_id)

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

    def advance(self, chunk: Counts, last_row: int, bytes_read: int, now: datetime) -> None:
        """A chunk committed: its rows counted, the checkpoint moved to its last row."""
        self.ensure_running()
        self.counts = self.counts.plus(chunk)
        self.checkpoint = max(self.checkpoint, last_row)
        self.bytes_read = max(self.bytes_read, bytes_read)
        self.updated_at = now

    def read_to(self, bytes_read: int, now: datetime) -> None:
        """Rows up to the checkpoint read again after a takeover: only the bytes move."""
        self.bytes_read = max(self.bytes_read, bytes_read)
        self.updated_at = now

    # --- the end ------------------------------------------------------------------------------
    def ensure_running(self) -> None:
        if not self.running:
            raise ImportEnded(self.import_id, self.state)

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

    def cancel(self, now: datetime) -> None:
        self.ensure_running()
        self._end(ImportState.CANCELLED, now)

    def _end(self, state: ImportState, now: datetime) -> None:
        self.state = state
        self.ended_at = self.updated_at = now
        self.lease_owner, self.leased_until = "", None
        if not self.spec.keep_file:
            self.file_kept = False


@dataclass(frozen=True)
class Joining:
    """A row's identities and personal data going to a member: a new one (`created`, the
    member made by the first row that names it), or one that exists, whose profile gaps, missing
    consents and tags it fills."""

    member_id: str
    created: bool
    row: ParsedRow
    link: tuple[ChannelIdentity, ...]  # identities bound to the member by this row


@dataclass(frozen=True)
class ReportRow:
    """One row of an import's report (personal data masked in `detail`)."""

    row_number: int
    outcome: RowOutcome
    member_id: str = ""
    reason: str = ""
    detail: str = ""
    legacy_key: str = ""  # hex of the legacy number's blind index ("" for a refused row)
    merge_candidate_id: str = ""


@dataclass(frozen=True)
class ImportedMember:
    """One legacy account that became (part of) a member, as MembersImported carries it."""

    member_id: str
    legacy_key: str  # hex of the legacy number's blind index: opaque, stable per account
    created: bool
    legacy_points: int
    legacy_points_expire_at: datetime | None
    tier_code: str
    tier_ends_at: datetime | None
    birthday_month: int
    birthday_day: int


@dataclass(frozen=True)
class Evidence:
    """One identity of a candidate's row and the member holding it (the value masked)."""

    member_id: str
    identity_type: str
    masked_value: str


@dataclass
class MergeCandidate:
    candidate_id: str
    import_id: str
    row_number: int
    unit: str
    evidence: tuple[Evidence, ...]
    imported: ImportedMember  # what the row carries over once it joins a member
    created_at: datetime
    state: CandidateState = CandidateState.OPEN
    survivor: str = ""
    resolved_at: datetime | None = None

    @property
    def name(self) -> str:
        return candidate_name(self.candidate_id)

    @property
    def member_ids(self) -> list[str]:
        return sorted({e.member_id for e in self.evidence})

    def ensure_open(self) -> None:
        if self.state is not CandidateState.OPEN:
            raise CandidateDecided(self.candidate_id, self.state)

    def ensure_names(self, survivor: str) -> None:
        if survivor not in self.member_ids:
            raise NotACandidateMember(self.candidate_id, survivor)

    def resolve(self, survivor: str, now: datetime) -> None:
        self.ensure_open()
        self.ensure_names(survivor)
        self.state = CandidateState.RESOLVED
        self.survivor = survivor
        self.resolved_at = now

    def dismiss(self, now: datetime) -> None:
        self.ensure_open()
        self.state = CandidateState.DISMISSED
        self.resolved_at = now


_SPACES = re.compile(r"\s+")


def same_name(one: str, other: str) -> bool:
    """Whether two full names are the same name: compared in Unicode's compatibility form,
    case and spacing aside ("Li  Wei" is "li wei"; full-width letters are letters)."""

    def key(name: str) -> str:
        return _SPACES.sub(" ", unicodedata.normalize("NFKC", name)).strip().casefold()

    return bool(key(one)) and key(one) == key(other)


# --- errors -------------------------------------------------------------------------------------
class ImportNotFound(NotFound):
    reason = "MEMBER_IMPORT_NOT_FOUND"

    def __init__(self, import_id: str) -> None:
        super().__init__(
            f"member import {import_id} was not found", metadata={"member_import": import_id}
        )


class ImportEnded(FailedPrecondition):
    reason = "MEMBER_IMPORT_ENDED"

    def __init__(self, import_id: str, state: ImportState) -> None:
        super().__init__(
            f"member import {import_id} has ended ({state.value})",
            metadata={"member_import": import_id, "state": state.value},
        )


class CandidateNotFound(NotFound):
    reason = "MERGE_CANDIDATE_NOT_FOUND"

    def __init__(self, candidate_id: str) -> None:
        super().__init__(
            f"merge candidate {candidate_id} was not found",
            metadata={"merge_candidate": candidate_id},
        )


class CandidateDecided(FailedPrecondition):
    reason = "MERGE_CANDIDATE_DECIDED"

    def __init__(self, candidate_id: str, state: CandidateState) -> None:
        super().__init__(
            f"merge candidate {candidate_id} was decided already ({state.value})",
            metadata={"merge_candidate": candidate_id, "state": state.value},
        )


class NotACandidateMember(InvalidArgument):
    reason = "NOT_A_CANDIDATE_MEMBER"

    def __init__(self, candidate_id: str, member_id: str) -> None:
        super().__init__(
            f"member {member_id} is not one of the members of merge candidate {candidate_id}",
            metadata={"merge_candidate": candidate_id, "member_id": member_id},
            field_violations=[
                FieldViolation("survivor_member_id", "one of the candidate's members")
            ],
        )
