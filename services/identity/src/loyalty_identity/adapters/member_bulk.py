"""A member import's chunk against the members' tables: who holds the chunk's identities (their
members locked until it commits), the names the auto-merge rule compares, and the chunk's
members written in bulk (new members, their data keys and identities with COPY; profiles,
consents with their history and tags in one statement each: no round trip per row)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from loyalty_kit.errors import Aborted
from loyalty_kit.resources import is_tag

from loyalty_identity.adapters.crypto import Keyring, seal, unseal
from loyalty_identity.adapters.repository import sealed_as
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.import_spec import consent_purpose
from loyalty_identity.domain.member import ConsentPurpose, Gender, MemberState
from loyalty_identity.domain.member_import import ImportedConsent, Joining

CHANNEL = "CHANNEL_IMPORT"
LIVE = (MemberState.ACTIVE.value, MemberState.SUSPENDED.value)
OWNER_ATTEMPTS = 3
_MEMBER_COLUMNS = (
    "member_id",
    "state",
    "registered_unit",
    "registered_channel",
    "created_at",
    "updated_at",
)
_IDENTITY_COLUMNS = ("member_id", "identity_type", "blind_index", "value_sealed", "linked_at")


class ChunkMembers:
    """The members' side of one chunk, on the chunk's connection (one transaction)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        keyring: Keyring,
        index: Callable[[ChannelIdentity], bytes],
    ) -> None:
        self.conn = conn
        self.keyring = keyring
        self.index = index  # an identity's blind index (the chunk's, made once each)

    async def owners(self, identities: Sequence[ChannelIdentity]) -> dict[ChannelIdentity, str]:
        """The members holding these identities, locked against a merge or an erasure until
        the chunk commits (a member merged meanwhile: its identities are read again)."""
        by_index = {(i.type, self.index(i)): i for i in identities}
        if not by_index:
            return {}
        conn = self.conn
        kinds, indexes = zip(*by_index, strict=True)
        for _ in range(OWNER_ATTEMPTS):
            rows = await conn.fetch(
                "SELECT i.identity_type, i.blind_index, i.member_id::text AS member_id "
                "FROM unnest($1::text[], $2::bytea[]) AS w(identity_type, blind_index) "
                "JOIN identities i USING (identity_type, blind_index)",
                list(kinds),
                list(indexes),
            )
            found = {
                by_index[(r["identity_type"], bytes(r["blind_index"]))]: r["member_id"]
                for r in rows
            }
            held = sorted(set(found.values()))
            if not held:
                return found
            live = await conn.fetch(
                "SELECT member_id::text FROM members WHERE member_id = ANY($1::uuid[]) "
                "AND state = ANY($2::text[]) ORDER BY member_id FOR SHARE",
                held,
                list(LIVE),
            )
            if len(live) == len(held):
                return found
        raise Aborted(
            "members of this chunk changed while it was read; the chunk runs again",
            reason="CHUNK_CONFLICT",
        )

    async def names(self, member_ids: Iterable[str]) -> dict[str, str]:
        """Members' full names, unsealed (those without one are absent)."""
        wanted = sorted(set(member_ids))
        if not wanted:
            return {}
        rows = await self.conn.fetch(
            "SELECT p.member_id::text AS member_id, p.full_name_sealed, k.key_id, k.wrapped_key "
            "FROM profiles p JOIN member_keys k USING (member_id) "
            "WHERE p.member_id = ANY($1::uuid[]) AND p.full_name_sealed IS NOT NULL",
            wanted,
        )
        found = {}
        for r in rows:
            key = self.keyring.unwrap(r["member_id"], r["key_id"], r["wrapped_key"])
            context = sealed_as(r["member_id"], "full_name")
            found[r["member_id"]] = unseal(key, r["full_name_sealed"], context)
        return found

    async def join(
        self, unit: str, joinings: Sequence[Joining], now: datetime
    ) -> dict[str, tuple[ImportedConsent, ...]]:
        """The chunk's new members, and every row's identities, profile, consents and tags;
        the consents given, by member."""
        if not joinings:
            return {}
        conn = self.conn
        keys: dict[str, bytes] = {}
        members: list[tuple[Any, ...]] = []
        member_keys: list[tuple[Any, ...]] = []
        for joining in joinings:
            if joining.created and joining.member_id not in keys:
                data_key = self.keyring.new_data_key()
                key_id, wrapped = self.keyring.wrap(joining.member_id, data_key)
                keys[joining.member_id] = data_key
                members.append((joining.member_id, "active", unit, CHANNEL, now, now))
                member_keys.append((joining.member_id, key_id, wrapped))
        existing = sorted({j.member_id for j in joinings} - keys.keys())
        if existing:
            for r in await conn.fetch(
                "SELECT member_id::text AS member_id, key_id, wrapped_key FROM member_keys "
                "WHERE member_id = ANY($1::uuid[])",
                existing,
            ):
                keys[r["member_id"]] = self.keyring.unwrap(
                    r["member_id"], r["key_id"], r["wrapped_key"]
                )
        identities = [
            (
                j.member_id,
                i.type,
                self.index(i),
                seal(keys[j.member_id], i.value, sealed_as(j.member_id, f"identity/{i.type}")),
                now,
            )
            for j in joinings
            for i in j.link
        ]
        if members:
            await conn.copy_records_to_table("members", records=members, columns=_MEMBER_COLUMNS)
            await conn.copy_records_to_table(
                "member_keys", records=member_keys, columns=("member_id", "key_id", "wrapped_key")
            )
        if identities:
            await conn.copy_records_to_table(
                "identities", records=identities, columns=_IDENTITY_COLUMNS
            )
        await self._fill_profiles(conn, joinings, keys)
        given = await self._consents(conn, unit, joinings, now)
        tags = [(j.member_id, tag, now) for j in joinings for tag in j.row.tags if is_tag(tag)]
        if tags:
            await conn.execute(
                "INSERT INTO member_tags (member_id, tag, added_at) "
                "SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) "
                "ON CONFLICT DO NOTHING",
                *map(list, zip(*tags, strict=True)),
            )
        return given

    async def _fill_profiles(
        self, conn: asyncpg.Connection, joinings: Sequence[Joining], keys: dict[str, bytes]
    ) -> None:
        """A new member's profile from its rows; an existing member's gaps filled (what it has
        is kept: a name, a birthday, a gender or a region it was given is never overwritten)."""
        profiles: dict[str, list[Any]] = {}
        for j in joinings:
            row, found = j.row, profiles.get(j.member_id)
            given = [row.name, row.gender.value, row.birthday, row.region]
            if found is None:
                profiles[j.member_id] = given
                continue
            for index, value in enumerate(given):
                if found[index] in ("", None, Gender.UNSPECIFIED.value):
                    found[index] = value
        records = [
            (
                member_id,
                seal(keys[member_id], name, sealed_as(member_id, "full_name")) if name else None,
                gender,
                (
                    seal(keys[member_id], birthday.isoformat(), sealed_as(member_id, "birthday"))
                    if birthday
                    else None
                ),
                region,
            )
            for member_id, (name, gender, birthday, region) in profiles.items()
        ]
        await conn.execute(
            "INSERT INTO profiles (member_id, full_name_sealed, gender, birthday_sealed, region) "
            "SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::bytea[], $5::text[]) "
            "ON CONFLICT (member_id) DO UPDATE SET "
            "full_name_sealed = COALESCE(profiles.full_name_sealed, EXCLUDED.full_name_sealed), "
            "gender = CASE WHEN profiles.gender = 'unspecified' THEN EXCLUDED.gender "
            "  ELSE profiles.gender END, "
            "birthday_sealed = COALESCE(profiles.birthday_sealed, EXCLUDED.birthday_sealed), "
            "region = CASE WHEN profiles.region = '' THEN EXCLUDED.region ELSE profiles.region END",
            *map(list, zip(*records, strict=True)),
        )

    async def _consents(
        self, conn: asyncpg.Connection, unit: str, joinings: Sequence[Joining], now: datetime
    ) -> dict[str, tuple[ImportedConsent, ...]]:
        """Consents a member has no decision on yet, with their history; a decision it made
        (in any unit, at any time) is its own and stays. The consents given, by member."""
        given = []
        for j in joinings:
            for consent in j.row.consents:
                purpose = consent_purpose(consent.purpose)
                if purpose is not None:
                    at = consent.changed_at or now
                    given.append((j.member_id, purpose.value, consent.granted, at))
        if not given:
            return {}
        rows = await conn.fetch(
            "WITH given AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bool[], "
            "  $4::timestamptz[]) AS g(member_id, purpose, granted, changed_at)), "
            "taken AS (INSERT INTO consents (member_id, purpose, granted, source, changed_at) "
            "  SELECT member_id, purpose, granted, $5, changed_at FROM given "
            "  ON CONFLICT DO NOTHING RETURNING member_id, purpose, granted, source, changed_at), "
            "logged AS (INSERT INTO consent_events (member_id, purpose, granted, source, "
            "  changed_at) SELECT member_id, purpose, granted, source, changed_at FROM taken) "
            "SELECT member_id::text AS member_id, purpose, granted, changed_at FROM taken "
            "ORDER BY member_id, purpose",
            *map(list, zip(*given, strict=True)),
            f"{unit}:import",
        )
        taken: dict[str, list[ImportedConsent]] = {}
        for r in rows:
            taken.setdefault(r["member_id"], []).append(
                ImportedConsent(ConsentPurpose(r["purpose"]), r["granted"], r["changed_at"])
            )
        return {member: tuple(consents) for member, consents in taken.items()}
