"""An import of a unit's legacy members as a long-running operation (`import_operation.py`:
states, chunks, checkpoint, lease, cancel, the mostly-bad stop, over a member import's
counters), and its merge candidates (pure: no I/O)."""

from __future__ import annotations

import re
import unicodedata
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
from loyalty_identity.domain.import_operation import ImportOperation
from loyalty_identity.domain.import_operation import ImportState as ImportState
from loyalty_identity.domain.imports import (
    ImportSpec,
    ParsedRow,
    RowOutcome,
)
from loyalty_identity.domain.member import ConsentPurpose

IMPORTS = "memberImports/"
CANDIDATES = "mergeCandidates/"


class CandidateState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


def import_name(import_id: str) -> str:
    return f"{IMPORTS}{import_id}"


def candidate_name(candidate_id: str) -> str:
    return f"{CANDIDATES}{candidate_id}"


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


class ImportEnded(FailedPrecondition):
    reason = "MEMBER_IMPORT_ENDED"

    def __init__(self, import_id: str, state: ImportState) -> None:
        super().__init__(
            f"member import {import_id} has ended ({state.value})",
            metadata={"member_import": import_id, "state": state.value},
        )


@dataclass
class MemberImport(ImportOperation[ImportSpec, Counts]):
    """A member import (`import_operation.ImportOperation` over a member import's counts)."""

    collection: ClassVar[str] = IMPORTS
    ended_error: ClassVar[type[FailedPrecondition]] = ImportEnded
    counts: Counts = field(default_factory=Counts)


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
class ImportedConsent:
    """A consent an import gave a member (a purpose it had no decision on)."""

    purpose: ConsentPurpose
    granted: bool
    changed_at: datetime


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
    tags: tuple[str, ...] = ()  # the tags the row put on the member
    consents: tuple[ImportedConsent, ...] = ()  # the consents it gave the member
    joined_at: datetime | None = None  # when it joined the unit's legacy programme


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
