"""Member imports in memory (`service_layer/ports.Imports`), beside the fake members' store, and
a unit of work over both that keeps what each commit recorded. The blind index is a plain
encoding here: nothing is sealed in memory."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from loyalty_identity.domain.events import Event
from loyalty_identity.domain.identities import ChannelIdentity, IdentityKind, IdentityType
from loyalty_identity.domain.import_spec import consent_purpose
from loyalty_identity.domain.imports import ParsedRow, RowOutcome, legacy_type
from loyalty_identity.domain.member import (
    Consent,
    Gender,
    LinkedIdentity,
    Member,
    MemberState,
    Profile,
)
from loyalty_identity.domain.member_import import (
    CandidateState,
    ImportedConsent,
    Joining,
    MemberImport,
    MergeCandidate,
    ReportRow,
)
from loyalty_identity.service_layer.ports import ImportWork

from tests.identity.unit.fakes import FakeMembers, FakeUnitOfWork, Tables

LIVE = (MemberState.ACTIVE, MemberState.SUSPENDED)


class FakeImports:
    def __init__(self, members: FakeMembers) -> None:
        self.members = members

    @property
    def tables(self) -> Tables:
        return self.members.tables

    # --- imports and their files
    async def add(self, job: MemberImport) -> bool:
        if await self.by_request(job.created_by, job.request_id) is not None:
            return False
        self.tables.imports[job.import_id] = copy.deepcopy(job)
        self.tables.import_parts[job.import_id] = []
        self.tables.import_rows[job.import_id] = {}
        return True

    async def by_request(self, created_by: str, request_id: str) -> MemberImport | None:
        for job in self.tables.imports.values():
            if (job.created_by, job.request_id) == (created_by, request_id):
                return copy.deepcopy(job)  # type: ignore[no-any-return]
        return None

    async def get(self, import_id: str, *, lock: bool = False) -> MemberImport | None:
        found = self.tables.imports.get(import_id)
        return copy.deepcopy(found) if found is not None else None

    async def save(self, job: MemberImport) -> None:
        self.tables.imports[job.import_id] = copy.deepcopy(job)

    async def listed(
        self, unit: str | None, after: tuple[str, str] | None, limit: int
    ) -> list[MemberImport]:
        found = sorted(
            (j for j in self.tables.imports.values() if unit is None or j.unit == unit),
            key=lambda j: (j.created_at.isoformat(), j.import_id),
            reverse=True,
        )
        if after is not None:
            found = [j for j in found if (j.created_at.isoformat(), j.import_id) < after]
        return copy.deepcopy(found[:limit])

    async def add_part(self, import_id: str, seq: int, content: bytes) -> None:
        self.tables.import_parts[import_id].append(content)

    async def drop_file(self, import_id: str) -> None:
        self.tables.import_parts[import_id] = []

    async def register_legacy_type(self, unit: str) -> None:
        code = legacy_type(unit)
        self.tables.types.setdefault(code, IdentityType(code, IdentityKind.TOKEN, ".+"))

    # --- what a chunk reads
    def legacy_key(self, identity: ChannelIdentity) -> str:
        return f"{identity.type}/{identity.value}".encode().hex()

    async def earlier_legacy(
        self, import_id: str, legacy: Sequence[ChannelIdentity]
    ) -> dict[ChannelIdentity, int]:
        keys = {self.legacy_key(i): i for i in legacy}
        found: dict[ChannelIdentity, int] = {}
        for number, row in sorted(self.tables.import_rows[import_id].items()):
            if row.legacy_key in keys:
                found.setdefault(keys[row.legacy_key], number)
        return found

    async def owners(self, identities: Sequence[ChannelIdentity]) -> dict[ChannelIdentity, str]:
        wanted = set(identities)
        return {
            linked.identity: member.member_id
            for member in self.tables.members.values()
            if member.state in LIVE
            for linked in member.identities
            if linked.identity in wanted
        }

    async def names(self, member_ids: Iterable[str]) -> dict[str, str]:
        return {
            m: self.tables.members[m].profile.full_name
            for m in member_ids
            if self.tables.members[m].profile.full_name
        }

    # --- what a chunk writes
    async def join(
        self, unit: str, joinings: Sequence[Joining], now: datetime
    ) -> dict[str, tuple[ImportedConsent, ...]]:
        taken: dict[str, tuple[ImportedConsent, ...]] = {}
        for joining in joinings:
            row = joining.row
            member = self.tables.members.get(joining.member_id)
            if member is None:
                member = Member(
                    joining.member_id, MemberState.ACTIVE, unit, "CHANNEL_IMPORT", now, now
                )
                self.tables.members[joining.member_id] = member
            member.identities += [LinkedIdentity(i, now) for i in joining.link]
            profile = member.profile
            member.profile = Profile(
                full_name=profile.full_name or row.name,
                gender=profile.gender if profile.gender is not Gender.UNSPECIFIED else row.gender,
                birthday=profile.birthday or row.birthday,
                region=profile.region or row.region,
                preferred_language=profile.preferred_language,
                time_zone=profile.time_zone,
            )
            for given in row.consents:
                purpose = consent_purpose(given.purpose)
                if purpose is not None and purpose not in member.consents:
                    consent = Consent(
                        purpose, given.granted, f"{unit}:import", given.changed_at or now
                    )
                    member.consents[purpose] = consent
                    taken[member.member_id] = (
                        *taken.get(member.member_id, ()),
                        ImportedConsent(purpose, consent.granted, consent.changed_at),
                    )
                    self.tables.consent_log.append(
                        (len(self.tables.consent_log) + 1, member.member_id, consent)
                    )
            member.tags |= set(row.tags)
        return taken

    async def add_report(self, import_id: str, rows: Sequence[ReportRow]) -> None:
        for row in rows:
            assert row.row_number not in self.tables.import_rows[import_id], "a row twice"
            self.tables.import_rows[import_id][row.row_number] = row

    async def add_candidate(self, candidate: MergeCandidate, row: ParsedRow) -> str:
        for open_one in self.tables.candidates.values():
            if open_one.state is CandidateState.OPEN and (
                open_one.unit,
                open_one.imported.legacy_key,
            ) == (candidate.unit, candidate.imported.legacy_key):
                return str(open_one.candidate_id)
        self.tables.candidates[candidate.candidate_id] = copy.deepcopy(candidate)
        self.tables.candidate_rows[candidate.candidate_id] = row
        return candidate.candidate_id

    # --- reports and candidates
    async def report(
        self, import_id: str, outcome: RowOutcome | None, after: int, limit: int
    ) -> list[ReportRow]:
        rows = sorted(self.tables.import_rows[import_id].items())
        chosen = [r for n, r in rows if n > after and (outcome is None or r.outcome is outcome)]
        return chosen[:limit]

    async def candidate(self, candidate_id: str, *, lock: bool = False) -> MergeCandidate | None:
        found = self.tables.candidates.get(candidate_id)
        return copy.deepcopy(found) if found is not None else None

    async def candidate_row(self, candidate: MergeCandidate) -> ParsedRow | None:
        found: ParsedRow | None = self.tables.candidate_rows.get(candidate.candidate_id)
        return found

    async def save_candidate(self, candidate: MergeCandidate) -> None:
        self.tables.candidates[candidate.candidate_id] = copy.deepcopy(candidate)
        if candidate.state is not CandidateState.OPEN:
            self.tables.candidate_rows.pop(candidate.candidate_id, None)

    async def settle_candidate_rows(
        self, candidate_id: str, outcome: RowOutcome, member_id: str, reason: str
    ) -> None:
        points = self.tables.candidates[candidate_id].imported.legacy_points
        for import_id, rows in self.tables.import_rows.items():
            for number, row in list(rows.items()):
                if (
                    row.merge_candidate_id == candidate_id
                    and row.outcome is RowOutcome.MERGE_CANDIDATE
                ):
                    rows[number] = dataclasses.replace(
                        row, outcome=outcome, member_id=member_id, reason=reason
                    )
                    counts = self.tables.imports[import_id].counts
                    counts.candidates -= 1
                    if outcome is RowOutcome.MERGED:
                        counts.merged += 1
                        counts.legacy_points += points
                    else:
                        counts.rejected += 1

    async def candidates(
        self,
        import_id: str | None,
        state: CandidateState | None,
        unit: str | None,
        after: tuple[str, int, str] | None,
        limit: int,
    ) -> list[MergeCandidate]:
        found = sorted(
            (
                c
                for c in self.tables.candidates.values()
                if (import_id is None or c.import_id == import_id)
                and (state is None or c.state is state)
                and (unit is None or c.unit == unit)
            ),
            key=lambda c: (c.created_at.isoformat(), c.row_number, c.candidate_id),
        )
        if after is not None:
            found = [
                c for c in found if (c.created_at.isoformat(), c.row_number, c.candidate_id) > after
            ]
        return copy.deepcopy(found[:limit])

    async def audit(
        self,
        import_id: str,
        action: str,
        candidate_id: str | None,
        operator: tuple[str, str],
        reason: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> None:
        self.tables.import_audit.append(
            {
                "import_id": import_id,
                "action": action,
                "candidate_id": candidate_id,
                "operator": operator,
                "reason": reason,
                "detail": detail,
            }
        )


class FakeImportWork(FakeUnitOfWork):
    """The fake unit of work with the imports; `published` also holds what was recorded on the
    unit of work itself (a chunk's MembersImported), after the members' events."""

    def __init__(self, store: FakeMembers | None = None) -> None:
        super().__init__(store)
        self._imports = FakeImports(self.store)
        self._recorded: list[Event] = []

    @property
    def imports(self) -> FakeImports:
        return self._imports

    def record(self, event: Event) -> None:
        self._recorded.append(event)

    def begin(self) -> None:
        super().begin()
        self._recorded = []

    def publish(self) -> None:
        super().publish()
        self.published.extend(self._recorded)
        self._recorded = []


def as_import_port(uow: FakeImportWork) -> ImportWork:
    """The fake is the import use cases' port (checked by the type checker)."""
    return uow
