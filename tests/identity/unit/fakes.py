"""The identity service's stores in memory: the members' store the use cases see
(`service_layer/ports.Members`) and a unit of work over it that rolls back what was not
committed and keeps the events of every commit."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loyalty_identity.domain.erasure import ErasureRequest
from loyalty_identity.domain.events import Event
from loyalty_identity.domain.identities import ChannelIdentity, IdentityKind, IdentityType
from loyalty_identity.domain.member import Consent, LinkedIdentity, Member, MemberState, Profile
from loyalty_identity.domain.member_code import CodeLookup, MemberCodeSecret
from loyalty_identity.service_layer.ports import IdentityWork, MemberCodeWork

from tests.support.fake_work import SnapshotWork

PHONE = IdentityType("phone", IdentityKind.PHONE)
EMAIL = IdentityType("email", IdentityKind.EMAIL)
CARD = IdentityType("store_card", IdentityKind.TOKEN, r"[0-9A-Z]{6,32}", "6-32 of 0-9, A-Z")


@dataclass
class Tables:
    types: dict[str, IdentityType] = field(
        default_factory=lambda: {t.code: t for t in (PHONE, EMAIL, CARD)}
    )
    units: set[str] = field(default_factory=set)
    members: dict[str, Member] = field(default_factory=dict)
    consent_log: list[tuple[int, str, Consent]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    # member imports (import_fakes.FakeImports keeps them here, so a rollback covers them)
    imports: dict[str, Any] = field(default_factory=dict)
    import_parts: dict[str, list[bytes]] = field(default_factory=dict)
    import_rows: dict[str, dict[int, Any]] = field(default_factory=dict)
    candidates: dict[str, Any] = field(default_factory=dict)
    candidate_rows: dict[str, Any] = field(default_factory=dict)
    import_audit: list[dict[str, Any]] = field(default_factory=list)
    # member codes: secrets by member, and the (handle, step) used
    member_codes: dict[str, MemberCodeSecret] = field(default_factory=dict)
    member_code_uses: set[tuple[str, int]] = field(default_factory=set)
    # wrong member codes: ("handle" or "client", its value, when)
    member_code_wrong: list[tuple[str, str, datetime]] = field(default_factory=list)
    # members' own erasure requests, in the order they were opened
    erasure_requests: list[ErasureRequest] = field(default_factory=list)


def _stored(member: Member) -> Member:
    """A copy as a row holds it: the member's state, none of its events."""
    return dataclasses.replace(copy.deepcopy(member), events=[])


class FakeMembers:
    def __init__(self) -> None:
        self.tables = Tables()
        self.seen: list[Member] = []

    def _row(self, member_id: str) -> Member:
        return self.tables.members[member_id]

    def _read(self, member_id: str) -> Member:
        member = copy.deepcopy(self._row(member_id))
        self.seen.append(member)
        return member

    # --- identity types and the programme's units
    async def identity_types(self) -> dict[str, IdentityType]:
        return dict(self.tables.types)

    async def upsert_identity_type(self, identity_type: IdentityType) -> None:
        self.tables.types[identity_type.code] = identity_type

    async def programme_units(self) -> set[str]:
        return set(self.tables.units)

    async def learn_programme_units(
        self, units: Iterable[str], version: int, now: datetime
    ) -> None:
        self.tables.units |= set(units)

    # --- members
    async def owners(self, wanted: Iterable[ChannelIdentity]) -> dict[ChannelIdentity, str]:
        asked = set(wanted)
        return {
            linked.identity: member.member_id
            for member in self.tables.members.values()
            for linked in member.identities
            if linked.identity in asked
        }

    async def owner(self, identity: ChannelIdentity) -> str | None:
        return (await self.owners([identity])).get(identity)

    async def get(self, member_id: str, *, lock: bool = False) -> Member | None:
        return self._read(member_id) if member_id in self.tables.members else None

    async def get_by_identity(self, identity: ChannelIdentity) -> Member | None:
        owner = await self.owner(identity)
        return None if owner is None else self._read(owner)

    async def get_many(self, member_ids: Sequence[str]) -> list[Member]:
        return [self._read(m) for m in member_ids if m in self.tables.members]

    async def add(self, member: Member) -> None:
        self.seen.append(member)
        self.tables.members[member.member_id] = _stored(member)
        await self.record_consents(member.member_id, list(member.consents.values()))

    async def save_state(self, member: Member) -> None:
        row = self._row(member.member_id)
        row.state, row.merged_into = member.state, member.merged_into
        row.suspension_reason, row.updated_at = member.suspension_reason, member.updated_at

    async def restore(self, member: Member) -> None:
        await self.save_state(member)
        await self.save_profile(member.member_id, member.profile)

    # --- parts of a member
    async def link(self, member_id: str, identity: ChannelIdentity, now: datetime) -> None:
        self._row(member_id).identities.append(LinkedIdentity(identity, now))

    async def unlink(self, member_id: str, identity: ChannelIdentity) -> None:
        row = self._row(member_id)
        row.identities = [i for i in row.identities if i.identity != identity]

    async def move_identities(
        self, identities: Sequence[LinkedIdentity], from_id: str, to_id: str
    ) -> None:
        for linked in identities:
            await self.unlink(from_id, linked.identity)
            await self.link(to_id, linked.identity, linked.linked_at)

    async def save_profile(self, member_id: str, profile: Profile) -> None:
        self._row(member_id).profile = copy.deepcopy(profile)

    async def record_consents(self, member_id: str, changes: Sequence[Consent]) -> None:
        for consent in changes:
            self._row(member_id).consents[consent.purpose] = consent
            self.tables.consent_log.append((len(self.tables.consent_log) + 1, member_id, consent))

    async def consent_events(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, Consent]]:
        found = [
            (seq, consent)
            for seq, holder, consent in reversed(self.tables.consent_log)
            if holder == member_id and (before_seq is None or seq < before_seq)
        ]
        return found[:limit]

    async def add_tags(self, member_id: str, tags: Iterable[str], now: datetime) -> None:
        self._row(member_id).tags |= set(tags)

    async def remove_tags(self, member_id: str, tags: Iterable[str]) -> None:
        self._row(member_id).tags -= set(tags)

    # --- listings
    def _listed(self, tag: str) -> list[str]:
        live = (MemberState.ACTIVE, MemberState.SUSPENDED)
        return sorted(
            m.member_id
            for m in self.tables.members.values()
            if (tag in m.tags if tag else m.state in live)
        )

    async def count_members(self, *, tag: str) -> int:
        return len(self._listed(tag))

    async def member_ids(self, *, tag: str, after: str | None, limit: int) -> list[str]:
        return [m for m in self._listed(tag) if after is None or m > after][:limit]

    # --- merges, erasure, the audit log, keys
    async def forward_merged(self, old_survivor: str, new_survivor: str) -> None:
        for member in self.tables.members.values():
            if member.merged_into == old_survivor:
                member.merged_into = new_survivor

    async def erase_personal_data(self, member_id: str) -> None:
        row = self._row(member_id)
        row.identities, row.profile, row.consents, row.tags = [], Profile(), {}, set()
        self.tables.consent_log = [e for e in self.tables.consent_log if e[1] != member_id]
        self.tables.member_codes.pop(member_id, None)  # as the data key and its sealed secret

    async def revoke_sessions(self, member_id: str, now: datetime, reason: str) -> int:
        return 0  # no sessions in memory: signing in is tested over gRPC

    async def audit(
        self,
        member_id: str,
        action: str,
        related_member_id: str | None,
        operator: tuple[str, str],
        reason: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> None:
        self.tables.audit.append(
            {
                "member_id": member_id,
                "action": action,
                "related": related_member_id,
                "operator": operator,
                "reason": reason,
                "detail": detail,
                "at": at,
            }
        )

    async def rewrap_data_keys(self, limit: int) -> int:
        return 0  # no keys in memory


class FakeMemberCodes:
    """Members' code secrets and the codes used, in the members' tables (rolled back with
    them)."""

    def __init__(self, members: FakeMembers) -> None:
        self.members = members

    @property
    def _tables(self) -> Tables:
        return self.members.tables

    async def of_member(self, member_id: str) -> MemberCodeSecret | None:
        return self._tables.member_codes.get(member_id)

    async def by_handle(self, handle: str) -> MemberCodeSecret | None:
        found = [s for s in self._tables.member_codes.values() if s.handle == handle]
        return found[0] if found else None

    async def add(self, secret: MemberCodeSecret, now: datetime) -> bool:
        if secret.member_id in self._tables.member_codes or await self.by_handle(secret.handle):
            return False
        self._tables.member_codes[secret.member_id] = secret
        return True

    async def forget(self, member_id: str) -> None:
        gone = self._tables.member_codes.pop(member_id, None)
        if gone is not None:
            self._tables.member_code_uses = {
                u for u in self._tables.member_code_uses if u[0] != gone.handle
            }

    async def claim(
        self,
        handle: str,
        step: int,
        now: datetime,
        wrong_within: tuple[datetime, datetime],
        most_wrong: int,
    ) -> tuple[bool, list[datetime]]:
        wrong, _ = await self.wrong_guesses(handle, "", *wrong_within)
        if len(wrong) >= most_wrong or (handle, step) in self._tables.member_code_uses:
            return False, wrong
        self._tables.member_code_uses.add((handle, step))
        return True, wrong

    async def prune(self, before_step: int) -> int:
        kept = {u for u in self._tables.member_code_uses if u[1] >= before_step}
        gone = len(self._tables.member_code_uses) - len(kept)
        self._tables.member_code_uses = kept
        return gone

    async def lookup(self, handle: str, client: str, since: datetime, now: datetime) -> CodeLookup:
        handle_wrong, client_wrong = await self.wrong_guesses(handle, client, since, now)
        return CodeLookup(await self.by_handle(handle), handle_wrong, client_wrong)

    async def wrong_guesses(
        self, handle: str, client: str, since: datetime, until: datetime
    ) -> tuple[list[datetime], list[datetime]]:
        def of(kind: str, value: str) -> list[datetime]:
            return [
                at
                for k, v, at in self._tables.member_code_wrong
                if (k, v) == (kind, value) and since < at <= until
            ]

        return of("handle", handle), of("client", client)

    async def add_wrong_guess(self, handles: Sequence[str], client: str, now: datetime) -> None:
        self._tables.member_code_wrong.append(("client", client, now))
        self._tables.member_code_wrong.extend(("handle", h, now) for h in handles)

    async def forget_wrong_guesses(self, before: datetime) -> int:
        kept = [g for g in self._tables.member_code_wrong if g[2] >= before]
        gone = len(self._tables.member_code_wrong) - len(kept)
        self._tables.member_code_wrong = kept
        return gone


class FakeErasures:
    """Members' erasure requests, in the members' tables (rolled back with them)."""

    def __init__(self, members: FakeMembers) -> None:
        self.members = members

    @property
    def _rows(self) -> list[ErasureRequest]:
        return self.members.tables.erasure_requests

    async def latest(self, member_id: str, *, lock: bool = False) -> ErasureRequest | None:
        found = [r for r in self._rows if r.member_id == member_id]
        return copy.deepcopy(found[-1]) if found else None

    async def add(self, request: ErasureRequest) -> None:
        self._rows.append(copy.deepcopy(request))

    async def save(self, request: ErasureRequest) -> None:
        for index, row in enumerate(self._rows):
            if row.erasure_id == request.erasure_id:
                self._rows[index] = copy.deepcopy(request)

    async def due(self, now: datetime, limit: int) -> list[str]:
        due = sorted((r for r in self._rows if r.is_due(now)), key=lambda r: r.erase_after)
        return [r.member_id for r in due][:limit]

    async def end_open(self, member_id: str, now: datetime) -> None:
        for row in self._rows:
            if row.member_id == member_id:
                row.done(now)


class FakeUnitOfWork(SnapshotWork):
    """One transaction on the fake store: `published` holds the events of every commit, in
    the order the members recorded them."""

    def __init__(self, store: FakeMembers | None = None) -> None:
        self.store: FakeMembers = store or FakeMembers()
        super().__init__(self.store)
        self.published: list[Event] = []

    @property
    def members(self) -> FakeMembers:
        return self.store

    @property
    def member_codes(self) -> FakeMemberCodes:
        return FakeMemberCodes(self.store)

    @property
    def erasures(self) -> FakeErasures:
        return FakeErasures(self.store)

    def begin(self) -> None:
        self.store.seen = []

    def publish(self) -> None:
        for member in self.store.seen:
            self.published.extend(member.events)
            member.events.clear()


def as_port(uow: FakeUnitOfWork) -> IdentityWork:
    """The fake is the use cases' port (checked by the type checker)."""
    return uow


def as_code_port(uow: FakeUnitOfWork) -> MemberCodeWork:
    """... and the member codes' port."""
    return uow
