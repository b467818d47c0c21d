"""What the identity use cases need from the world, as protocols: the members' store and the
unit of work that holds it. `adapters/repository.py` and `uow.py` implement them over
PostgreSQL (personal data sealed); the fast tests over memory (tests/identity/unit/fakes.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from loyalty_kit.uow import Transaction

from loyalty_identity.domain.events import Event
from loyalty_identity.domain.identities import ChannelIdentity, IdentityType
from loyalty_identity.domain.imports import ParsedRow, RowOutcome
from loyalty_identity.domain.member import Consent, LinkedIdentity, Member, Profile
from loyalty_identity.domain.member_code import CodeLookup, MemberCodeSecret
from loyalty_identity.domain.member_import import (
    CandidateState,
    ImportedConsent,
    Joining,
    MemberImport,
    MergeCandidate,
    ReportRow,
)
from loyalty_identity.domain.order_import import OrderImport, OrderOutcome, OrderRow


class Members(Protocol):
    # --- identity types and the programme's units
    async def identity_types(self) -> dict[str, IdentityType]: ...
    async def upsert_identity_type(self, identity_type: IdentityType) -> None: ...
    async def programme_units(self) -> set[str]: ...
    async def learn_programme_units(
        self, units: Iterable[str], version: int, now: datetime
    ) -> None: ...

    # --- members (the aggregate, with what it recorded) and who holds an identity
    async def owners(self, wanted: Iterable[ChannelIdentity]) -> dict[ChannelIdentity, str]: ...
    async def owner(self, identity: ChannelIdentity) -> str | None: ...
    async def get(self, member_id: str, *, lock: bool = False) -> Member | None: ...
    async def get_by_identity(self, identity: ChannelIdentity) -> Member | None: ...
    async def get_many(self, member_ids: Sequence[str]) -> list[Member]: ...
    async def add(self, member: Member) -> None: ...
    async def save_state(self, member: Member) -> None: ...
    async def restore(self, member: Member) -> None: ...

    # --- parts of a member
    async def link(self, member_id: str, identity: ChannelIdentity, now: datetime) -> None: ...
    async def unlink(self, member_id: str, identity: ChannelIdentity) -> None: ...
    async def move_identities(
        self, identities: Sequence[LinkedIdentity], from_id: str, to_id: str
    ) -> None: ...
    async def save_profile(self, member_id: str, profile: Profile) -> None: ...
    async def record_consents(self, member_id: str, changes: Sequence[Consent]) -> None: ...
    async def consent_events(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, Consent]]: ...
    async def add_tags(self, member_id: str, tags: Iterable[str], now: datetime) -> None: ...
    async def remove_tags(self, member_id: str, tags: Iterable[str]) -> None: ...

    # --- listings
    async def count_members(self, *, tag: str) -> int: ...
    async def member_ids(self, *, tag: str, after: str | None, limit: int) -> list[str]: ...

    # --- merges, erasure, the audit log, keys
    async def forward_merged(self, old_survivor: str, new_survivor: str) -> None: ...
    async def erase_personal_data(self, member_id: str) -> None: ...
    async def revoke_sessions(self, member_id: str, now: datetime, reason: str) -> int: ...
    async def audit(
        self,
        member_id: str,
        action: str,
        related_member_id: str | None,
        operator: tuple[str, str],
        reason: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> None: ...
    async def rewrap_data_keys(self, limit: int) -> int: ...


class MemberCodes(Protocol):
    """Members' code secrets (sealed at rest) and the member codes already resolved
    (`adapters/member_codes.py`)."""

    async def of_member(self, member_id: str) -> MemberCodeSecret | None: ...
    async def by_handle(self, handle: str) -> MemberCodeSecret | None: ...
    async def add(self, secret: MemberCodeSecret, now: datetime) -> bool: ...
    async def forget(self, member_id: str) -> None: ...
    async def claim(
        self,
        handle: str,
        step: int,
        now: datetime,
        wrong_within: tuple[datetime, datetime],
        most_wrong: int,
    ) -> tuple[bool, list[datetime]]: ...
    async def prune(self, before_step: int) -> int: ...
    async def lookup(
        self, handle: str, client: str, since: datetime, until: datetime
    ) -> CodeLookup: ...
    async def wrong_guesses(
        self, handle: str, client: str, since: datetime, until: datetime
    ) -> tuple[list[datetime], list[datetime]]: ...
    async def add_wrong_guess(self, handles: Sequence[str], client: str, now: datetime) -> None: ...


J = TypeVar("J")  # an import (a kind's operation)
O_contra = TypeVar("O_contra", contravariant=True)  # its report's outcomes
R_co = TypeVar("R_co", covariant=True)  # its report's rows


class Operations(Protocol[J, O_contra, R_co]):
    """A kind's imports, their files and reports (`adapters/import_operations.py`)."""

    async def add(self, job: J) -> bool: ...
    async def by_request(self, created_by: str, request_id: str) -> J | None: ...
    async def get(self, import_id: str, *, lock: bool = False) -> J | None: ...
    async def save(self, job: J) -> None: ...
    async def listed(
        self, unit: str | None, after: tuple[str, str] | None, limit: int
    ) -> list[J]: ...
    async def add_part(self, import_id: str, seq: int, content: bytes) -> None: ...
    async def drop_file(self, import_id: str) -> None: ...
    async def report(
        self, import_id: str, outcome: O_contra | None, after: int, limit: int
    ) -> Sequence[R_co]: ...


class Imports(Operations[MemberImport, RowOutcome, ReportRow], Protocol):
    """Member imports, their files, reports and merge candidates, and the bulk writes of a
    chunk's members (`adapters/imports.py`; the fast tests' fake keeps them in memory)."""

    async def register_legacy_type(self, unit: str) -> None: ...

    # --- what a chunk reads
    def legacy_key(self, identity: ChannelIdentity) -> str: ...
    async def earlier_legacy(
        self, import_id: str, legacy: Sequence[ChannelIdentity]
    ) -> dict[ChannelIdentity, int]: ...
    async def owners(self, identities: Sequence[ChannelIdentity]) -> dict[ChannelIdentity, str]: ...
    async def names(self, member_ids: Iterable[str]) -> dict[str, str]: ...

    # --- what a chunk writes
    async def join(
        self, unit: str, joinings: Sequence[Joining], now: datetime
    ) -> dict[str, tuple[ImportedConsent, ...]]: ...
    async def add_report(self, import_id: str, rows: Sequence[ReportRow]) -> None: ...
    async def add_candidate(self, candidate: MergeCandidate, row: ParsedRow) -> str: ...

    # --- candidates
    async def candidate(
        self, candidate_id: str, *, lock: bool = False
    ) -> MergeCandidate | None: ...
    async def candidate_row(self, candidate: MergeCandidate) -> ParsedRow | None: ...
    async def save_candidate(self, candidate: MergeCandidate) -> None: ...
    async def settle_candidate_rows(
        self, candidate_id: str, outcome: RowOutcome, member_id: str, reason: str
    ) -> None: ...
    async def candidates(
        self,
        import_id: str | None,
        state: CandidateState | None,
        unit: str | None,
        after: tuple[str, int, str] | None,
        limit: int,
    ) -> list[MergeCandidate]: ...
    async def audit(
        self,
        import_id: str,
        action: str,
        candidate_id: str | None,
        operator: tuple[str, str],
        reason: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> None: ...


class OrderImports(Operations[OrderImport, OrderOutcome, OrderRow], Protocol):
    """Order imports, their files and reports, and the orders carried over
    (`adapters/order_imports.py`)."""

    async def members_of(self, identities: Sequence[ChannelIdentity]) -> list[str | None]: ...
    async def claim_orders(
        self, unit: str, import_id: str, orders: Sequence[tuple[str, str, int]]
    ) -> set[str]: ...
    async def add_report(self, import_id: str, rows: Sequence[OrderRow]) -> None: ...


class IdentityWork(Transaction, Protocol):
    """A unit of work as the use cases see it: one transaction over the members; on commit it
    hands the events of the members it saw to the outbox."""

    @property
    def members(self) -> Members: ...


class MemberCodeWork(IdentityWork, Protocol):
    """A unit of work of the member codes: the members and their code secrets."""

    @property
    def member_codes(self) -> MemberCodes: ...


class ImportWork(IdentityWork, Protocol):
    """A unit of work of the member imports: the members, the imports, and events that are no
    member's own (a chunk's MembersImported)."""

    @property
    def imports(self) -> Imports: ...

    def record(self, event: Event) -> None: ...


class OrderImportWork(ImportWork, Protocol):
    """A unit of work of the order imports: the member imports' plus the order imports'
    store."""

    @property
    def order_imports(self) -> OrderImports: ...
