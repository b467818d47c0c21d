"""Members in PostgreSQL, personal data sealed with each member's data key.

The repository is the only place that sees both ciphertext and plaintext: the domain gets
plain `Member`s, the database gets sealed bytes and blind indexes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_identity.adapters import tables as t
from loyalty_identity.adapters.crypto import Keyring, seal, sealed_as, unseal
from loyalty_identity.adapters.identity_types import IdentityTypeCache
from loyalty_identity.domain.identities import ChannelIdentity, IdentityKind, IdentityType
from loyalty_identity.domain.member import (
    Consent,
    ConsentPurpose,
    Gender,
    LinkedIdentity,
    Member,
    MemberState,
    Profile,
)

# A member's whole aggregate in one round trip: the row, its wrapped key and profile, and its
# identities, consents and tags as arrays of records.
_AGGREGATE = """
SELECT m.member_id, m.state, m.merged_into, m.registered_unit, m.registered_channel,
       m.suspension_reason, m.created_at, m.updated_at,
       k.key_id, k.wrapped_key,
       p.full_name_sealed, p.gender, p.birthday_sealed, p.region, p.preferred_language,
       p.time_zone,
       ARRAY(SELECT ROW(i.identity_type, i.value_sealed, i.linked_at) FROM identities i
              WHERE i.member_id = m.member_id ORDER BY i.linked_at, i.identity_type) AS identities,
       ARRAY(SELECT ROW(c.purpose, c.granted, c.source, c.changed_at) FROM consents c
              WHERE c.member_id = m.member_id ORDER BY c.purpose) AS consents,
       ARRAY(SELECT g.tag FROM member_tags g WHERE g.member_id = m.member_id) AS tags
FROM members m
LEFT JOIN member_keys k ON k.member_id = m.member_id
LEFT JOIN profiles p ON p.member_id = m.member_id
WHERE {where}
"""
_BY_ID = _AGGREGATE.format(where="m.member_id = $1")
_BY_ID_FOR_UPDATE = _BY_ID + " FOR UPDATE OF m"
_BY_IDENTITY = _AGGREGATE.format(
    where="m.member_id = (SELECT member_id FROM identities "
    "WHERE identity_type = $1 AND blind_index = $2)"
)


_field = sealed_as


class MemberRepository:
    def __init__(
        self, session: AsyncSession, keyring: Keyring, types: IdentityTypeCache | None = None
    ) -> None:
        self.session = session
        self.keyring = keyring
        self.types = types or IdentityTypeCache(ttl=0)
        self._data_keys: dict[str, bytes] = {}
        self.seen: list[Member] = []  # members read or added: the unit of work collects events

    # --- data keys ----------------------------------------------------------------------------
    async def _create_data_key(self, member_id: str) -> bytes:
        data_key = self.keyring.new_data_key()
        key_id, wrapped = self.keyring.wrap(member_id, data_key)
        await self.session.execute(
            insert(t.member_keys).values(member_id=member_id, key_id=key_id, wrapped_key=wrapped)
        )
        self._data_keys[member_id] = data_key
        return data_key

    async def _data_key(self, member_id: str) -> bytes | None:
        if member_id in self._data_keys:
            return self._data_keys[member_id]
        row = (
            await self.session.execute(
                select(t.member_keys.c.key_id, t.member_keys.c.wrapped_key).where(
                    t.member_keys.c.member_id == member_id
                )
            )
        ).first()
        if row is None:
            return None
        data_key = self.keyring.unwrap(member_id, row.key_id, row.wrapped_key)
        self._data_keys[member_id] = data_key
        return data_key

    # --- identity types -----------------------------------------------------------------------
    async def identity_types(self) -> dict[str, IdentityType]:
        cached = self.types.get()
        if cached is not None:
            return cached
        rows = await self.session.execute(
            select(t.identity_types).order_by(t.identity_types.c.code)
        )
        types = {
            r.code: IdentityType(r.code, IdentityKind(r.kind), r.pattern, r.description)
            for r in rows
        }
        self.types.put(types)
        return types

    async def upsert_identity_type(self, identity_type: IdentityType) -> None:
        values = {
            "code": identity_type.code,
            "kind": identity_type.kind.value,
            "pattern": identity_type.pattern,
            "description": identity_type.description,
        }
        await self.session.execute(
            insert(t.identity_types)
            .values(**values)
            .on_conflict_do_update(index_elements=["code"], set_=values)
        )
        self.types.invalidate()

    # --- the programme's units ------------------------------------------------------------------
    async def programme_units(self) -> set[str]:
        """Every unit a published programme has named (none before the first is learned)."""
        conn = await driver_connection(self.session)
        return {r["unit"] for r in await conn.fetch("SELECT unit FROM programme_units")}

    async def learn_programme_units(
        self, units: Iterable[str], version: int, now: datetime
    ) -> None:
        """Units of a programme version: kept once named, so a version arriving late or a unit
        a later version leaves out never strands the members registered there."""
        conn = await driver_connection(self.session)
        await conn.executemany(
            "INSERT INTO programme_units (unit, version, learned_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (unit) DO NOTHING",
            [(unit, version, now) for unit in units],
        )

    # --- look-ups -----------------------------------------------------------------------------
    async def owners(self, wanted: Iterable[ChannelIdentity]) -> dict[ChannelIdentity, str]:
        """Which member each identity is bound to (identities bound to nobody are absent)."""
        by_index = {(i.type, self.keyring.blind_index(i)): i for i in wanted}
        if not by_index:
            return {}
        found: dict[ChannelIdentity, str] = {}
        for identity_type in {key[0] for key in by_index}:
            indexes = [index for (kind, index) in by_index if kind == identity_type]
            rows = await self.session.execute(
                select(t.identities.c.blind_index, t.identities.c.member_id).where(
                    t.identities.c.identity_type == identity_type,
                    t.identities.c.blind_index.in_(indexes),
                )
            )
            for row in rows:
                found[by_index[(identity_type, bytes(row.blind_index))]] = str(row.member_id)
        return found

    async def owner(self, identity: ChannelIdentity) -> str | None:
        return (await self.owners([identity])).get(identity)

    async def get(self, member_id: str, *, lock: bool = False) -> Member | None:
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(_BY_ID_FOR_UPDATE if lock else _BY_ID, member_id)
        return self._member(row) if row is not None else None

    async def get_by_identity(self, identity: ChannelIdentity) -> Member | None:
        """The member an identity belongs to, read in one statement (the Resolve hot path)."""
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(_BY_IDENTITY, identity.type, self.keyring.blind_index(identity))
        return self._member(row) if row is not None else None

    def _member(self, record: Any) -> Member:
        row = SimpleNamespace(**dict(record.items()))
        member_id = str(row.member_id)
        member = self._seen(
            Member(
                member_id=member_id,
                state=MemberState(row.state),
                registered_unit=row.registered_unit,
                registered_channel=row.registered_channel,
                created_at=row.created_at,
                updated_at=row.updated_at,
                merged_into=str(row.merged_into or ""),
                suspension_reason=row.suspension_reason,
            )
        )
        if member.state in (MemberState.ERASED, MemberState.MERGED) or row.wrapped_key is None:
            return member  # tombstones hold no personal data
        data_key = self._data_keys.get(member_id) or self.keyring.unwrap(
            member_id, row.key_id, row.wrapped_key
        )
        self._data_keys[member_id] = data_key
        for identity_type, sealed, linked_at in row.identities:
            value = unseal(data_key, sealed, _field(member_id, f"identity/{identity_type}"))
            member.identities.append(
                LinkedIdentity(ChannelIdentity(identity_type, value), linked_at)
            )
        if row.gender is not None:
            member.profile = Profile(
                full_name=(
                    unseal(data_key, row.full_name_sealed, _field(member_id, "full_name"))
                    if row.full_name_sealed
                    else ""
                ),
                gender=Gender(row.gender),
                birthday=(
                    date.fromisoformat(
                        unseal(data_key, row.birthday_sealed, _field(member_id, "birthday"))
                    )
                    if row.birthday_sealed
                    else None
                ),
                region=row.region,
                preferred_language=row.preferred_language,
                time_zone=row.time_zone,
            )
        for purpose, granted, source, changed_at in row.consents:
            consent_purpose = ConsentPurpose(purpose)
            member.consents[consent_purpose] = Consent(consent_purpose, granted, source, changed_at)
        member.tags = set(row.tags)
        return member

    async def get_many(self, member_ids: Sequence[str]) -> list[Member]:
        members = [await self.get(member_id) for member_id in member_ids]
        return [m for m in members if m is not None]

    # --- writes -------------------------------------------------------------------------------
    def _seen(self, member: Member) -> Member:
        self.seen.append(member)
        return member

    async def add(self, member: Member) -> None:
        self._seen(member)
        await self.session.execute(
            insert(t.members).values(
                member_id=member.member_id,
                state=member.state.value,
                registered_unit=member.registered_unit,
                registered_channel=member.registered_channel,
                created_at=member.created_at,
                updated_at=member.updated_at,
            )
        )
        await self._create_data_key(member.member_id)
        for linked in member.identities:
            await self.link(member.member_id, linked.identity, linked.linked_at)
        await self.save_profile(member.member_id, member.profile)
        await self.record_consents(member.member_id, list(member.consents.values()))

    async def link(self, member_id: str, identity: ChannelIdentity, now: datetime) -> None:
        data_key = await self._data_key(member_id)
        assert data_key is not None
        await self.session.execute(
            insert(t.identities).values(
                member_id=member_id,
                identity_type=identity.type,
                blind_index=self.keyring.blind_index(identity),
                value_sealed=seal(
                    data_key, identity.value, _field(member_id, f"identity/{identity.type}")
                ),
                linked_at=now,
            )
        )

    async def unlink(self, member_id: str, identity: ChannelIdentity) -> None:
        await self.session.execute(
            delete(t.identities).where(
                t.identities.c.member_id == member_id,
                t.identities.c.identity_type == identity.type,
                t.identities.c.blind_index == self.keyring.blind_index(identity),
            )
        )

    async def save_state(self, member: Member) -> None:
        await self.session.execute(
            update(t.members)
            .where(t.members.c.member_id == member.member_id)
            .values(
                state=member.state.value,
                merged_into=member.merged_into or None,
                suspension_reason=member.suspension_reason,
                updated_at=member.updated_at,
            )
        )

    async def save_profile(self, member_id: str, profile: Profile) -> None:
        data_key = await self._data_key(member_id)
        assert data_key is not None
        values = {
            "full_name_sealed": (
                seal(data_key, profile.full_name, _field(member_id, "full_name"))
                if profile.full_name
                else None
            ),
            "gender": profile.gender.value,
            "birthday_sealed": (
                seal(data_key, profile.birthday.isoformat(), _field(member_id, "birthday"))
                if profile.birthday
                else None
            ),
            "region": profile.region,
            "preferred_language": profile.preferred_language,
            "time_zone": profile.time_zone,
        }
        await self.session.execute(
            insert(t.profiles)
            .values(member_id=member_id, **values)
            .on_conflict_do_update(index_elements=["member_id"], set_=values)
        )

    async def record_consents(self, member_id: str, changes: Sequence[Consent]) -> None:
        for consent in changes:
            values = {
                "granted": consent.granted,
                "source": consent.source,
                "changed_at": consent.changed_at,
            }
            await self.session.execute(
                insert(t.consents)
                .values(member_id=member_id, purpose=consent.purpose.value, **values)
                .on_conflict_do_update(index_elements=["member_id", "purpose"], set_=values)
            )
            await self.session.execute(
                insert(t.consent_events).values(
                    member_id=member_id, purpose=consent.purpose.value, **values
                )
            )

    async def consent_events(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, Consent]]:
        query = (
            select(t.consent_events)
            .where(t.consent_events.c.member_id == member_id)
            .order_by(t.consent_events.c.seq.desc())
            .limit(limit)
        )
        if before_seq is not None:
            query = query.where(t.consent_events.c.seq < before_seq)
        rows = await self.session.execute(query)
        return [
            (r.seq, Consent(ConsentPurpose(r.purpose), r.granted, r.source, r.changed_at))
            for r in rows
        ]

    async def add_tags(self, member_id: str, tags: Iterable[str], now: datetime) -> None:
        rows = [{"member_id": member_id, "tag": tag, "added_at": now} for tag in tags]
        if rows:
            await self.session.execute(insert(t.member_tags).values(rows).on_conflict_do_nothing())

    async def remove_tags(self, member_id: str, tags: Iterable[str]) -> None:
        tags = list(tags)
        if tags:
            await self.session.execute(
                delete(t.member_tags).where(
                    t.member_tags.c.member_id == member_id, t.member_tags.c.tag.in_(tags)
                )
            )

    async def count_tags(self, member_id: str) -> int:
        return int(
            await self.session.scalar(
                select(func.count()).where(t.member_tags.c.member_id == member_id)
            )
            or 0
        )

    @staticmethod
    def _listed(tag: str) -> tuple[Select[Any], Any]:
        """The listing's query (member ids) and the column it is ordered by."""
        if tag:
            return (
                select(t.member_tags.c.member_id).where(t.member_tags.c.tag == tag),
                t.member_tags.c.member_id,
            )
        return (
            select(t.members.c.member_id).where(
                t.members.c.state.in_([MemberState.ACTIVE.value, MemberState.SUSPENDED.value])
            ),
            t.members.c.member_id,
        )

    async def count_members(self, *, tag: str) -> int:
        query, _ = self._listed(tag)
        return int(
            await self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        )

    async def member_ids(self, *, tag: str, after: str | None, limit: int) -> list[str]:
        query, column = self._listed(tag)
        if after is not None:
            query = query.where(column > after)
        return [str(m) for m in await self.session.scalars(query.order_by(column).limit(limit))]

    async def move_identities(
        self, identities: Sequence[LinkedIdentity], from_id: str, to_id: str
    ) -> None:
        """Re-bind identities of one member to another, sealed with the new holder's data key
        (a merge: all of the absorbed member's; an unmerge: those named)."""
        for linked in identities:
            await self.unlink(from_id, linked.identity)
        await self.session.flush()
        for linked in identities:
            await self.link(to_id, linked.identity, linked.linked_at)

    async def restore(self, member: Member) -> None:
        """A member absorbed by a merge is one of its own again: its state, a new data key
        (the merge shredded the old one) and an empty profile."""
        await self.save_state(member)
        await self._create_data_key(member.member_id)
        await self.save_profile(member.member_id, member.profile)

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
        """Append to the audit log of member operations (no personal data in `detail`)."""
        unit, client_id = operator
        await self.session.execute(
            insert(t.member_audit).values(
                member_id=member_id,
                action=action,
                related_member_id=related_member_id,
                unit=unit,
                client_id=client_id,
                reason=reason,
                detail=detail,
                at=at,
            )
        )

    async def forward_merged(self, old_survivor: str, new_survivor: str) -> None:
        """Members merged into `old_survivor` now point straight at `new_survivor` (no chains)."""
        await self.session.execute(
            update(t.members)
            .where(t.members.c.merged_into == old_survivor)
            .values(merged_into=new_survivor)
        )

    async def erase_personal_data(self, member_id: str) -> None:
        """Crypto-shred and delete: the data key first, then everything personal (and the
        sign-in codes sent to the member's phones, whose phone is sealed apart)."""
        phones = select(t.identities.c.blind_index).where(
            t.identities.c.member_id == member_id, t.identities.c.identity_type == "phone"
        )
        await self.session.execute(
            delete(t.sign_in_challenges).where(t.sign_in_challenges.c.phone_index.in_(phones))
        )
        for table in (
            t.member_keys,
            t.identities,
            t.profiles,
            t.consents,
            t.consent_events,
            t.member_tags,
            t.member_codes,
        ):
            await self.session.execute(delete(table).where(table.c.member_id == member_id))
        self._data_keys.pop(member_id, None)

    async def revoke_sessions(self, member_id: str, now: datetime, reason: str) -> int:
        """End the member's open sign-in sessions (their refresh tokens refresh nothing)."""
        sessions = t.member_sessions
        done = await self.session.execute(
            update(sessions)
            .where(sessions.c.member_id == member_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return int(done.rowcount)  # type: ignore[attr-defined]

    async def rewrap_data_keys(self, limit: int) -> int:
        """Re-wrap up to `limit` data keys not yet under the active master key."""
        rows = (
            await self.session.execute(
                select(t.member_keys)
                .where(t.member_keys.c.key_id != self.keyring.active_key_id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            member_id = str(row.member_id)
            data_key = self.keyring.unwrap(member_id, row.key_id, row.wrapped_key)
            key_id, wrapped = self.keyring.wrap(member_id, data_key)
            await self.session.execute(
                update(t.member_keys)
                .where(t.member_keys.c.member_id == member_id)
                .values(key_id=key_id, wrapped_key=wrapped)
            )
        return len(rows)
