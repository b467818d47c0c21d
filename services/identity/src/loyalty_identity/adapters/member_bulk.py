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

from loyalty_identity.adapters.crypto import Keyring, seal, sealed_as, unseal
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.import_spec import consent_purpose
from loyalty_identity.domain.imports import SealedAhead
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
# Each of the chunk's identities looked up by the unique index, one probe each (in the index's
# order): as a plain join of the unnested arrays, a plan made for their length (thousands of
# rows) hashes the whole identities table instead, a scan growing with every member (on a loaded
# 2-core machine, 15,000 identities at 1.16 million held: 5.0 s hashed, 0.9 s probed); the LIMIT
# keeps the subquery a probe (the pair is unique).
_OWNERS = (
    "SELECT w.identity_type, w.blind_index, i.member_id::text AS member_id "
    "FROM unnest($1::text[], $2::bytea[]) AS w(identity_type, blind_index) "
    "CROSS JOIN LATERAL (SELECT member_id FROM identities i "
    "  WHERE i.identity_type = w.identity_type AND i.blind_index = w.blind_index LIMIT 1) i"
)
_PROFILE_COLUMNS = ("member_id", "full_name_sealed", "gender", "birthday_sealed", "region")
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
        kinds, indexes = zip(*sorted(by_index), strict=True)  # the index probed in its order
        for _ in range(OWNER_ATTEMPTS):
            rows = await conn.fetch(_OWNERS, list(kinds), list(indexes))
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
        the consents given, by member. A new member made by a row whose data was sealed ahead
        for it (`SealedAhead`, by the reader's worker process) takes that data key and those
        sealed values; anything else is sealed here."""
        if not joinings:
            return {}
        conn = self.conn
        keys: dict[str, bytes] = {}
        ahead: dict[str, SealedAhead] = {}  # members made with the data their row sealed
        members: list[tuple[Any, ...]] = []
        member_keys: list[tuple[Any, ...]] = []
        for joining in joinings:
            member_id = joining.member_id
            if joining.created and member_id not in keys:
                sealed = joining.row.sealed
                if sealed is not None and sealed.member_id == member_id:
                    ahead[member_id] = sealed
                    data_key, key_id, wrapped = sealed.data_key, sealed.key_id, sealed.wrapped_key
                else:
                    data_key = self.keyring.new_data_key()
                    key_id, wrapped = self.keyring.wrap(member_id, data_key)
                keys[member_id] = data_key
                members.append((member_id, "active", unit, CHANNEL, now, now))
                member_keys.append((member_id, key_id, wrapped))
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
        identities = []
        index = self.index
        for j in joinings:
            member_id = j.member_id
            sealed = j.row.sealed
            if sealed is not None and ahead.get(member_id) is sealed:  # the row that made it
                values = dict(zip(j.row.identities, sealed.identities, strict=True))
                identities += [(member_id, i.type, index(i), values[i], now) for i in j.link]
                continue
            key = keys[member_id]
            identities += [
                (
                    member_id,
                    i.type,
                    index(i),
                    seal(key, i.value, sealed_as(member_id, f"identity/{i.type}")),
                    now,
                )
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
        await self._fill_profiles(conn, joinings, keys, ahead, {m[0] for m in members})
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
        self,
        conn: asyncpg.Connection,
        joinings: Sequence[Joining],
        keys: dict[str, bytes],
        ahead: dict[str, SealedAhead],
        made_here: set[str],
    ) -> None:
        """A new member's profile from its rows; an existing member's gaps filled (what it has
        is kept: a name, a birthday, a gender or a region it was given is never overwritten).
        A name or birthday that the row which made the member sealed ahead is taken as sealed.
        The chunk's new members' profiles are copied in (none can be there yet); only the
        existing members' go through the upsert."""
        profiles: dict[str, list[Any]] = {}
        for j in joinings:
            row, found = j.row, profiles.get(j.member_id)
            given = [row.name, row.gender.value, row.birthday, row.region, row.sealed]
            if found is None:
                profiles[j.member_id] = given
                continue
            for index, value in enumerate(given[:4]):
                if found[index] in ("", None, Gender.UNSPECIFIED.value):
                    found[index] = value
                    found[4] = None  # the profile is no longer one row's: sealed here
        fresh: list[tuple[Any, ...]] = []
        records: list[tuple[Any, ...]] = []
        for member_id, (name, gender, birthday, region, sealed) in profiles.items():
            made = ahead.get(member_id)
            into = fresh if member_id in made_here else records
            if made is not None and made is sealed:
                into.append((member_id, made.name, gender, made.birthday, region))
                continue
            key = keys[member_id]
            into.append(
                (
                    member_id,
                    seal(key, name, sealed_as(member_id, "full_name")) if name else None,
                    gender,
                    (
                        seal(key, birthday.isoformat(), sealed_as(member_id, "birthday"))
                        if birthday
                        else None
                    ),
                    region,
                )
            )
        if fresh:
            await conn.copy_records_to_table("profiles", records=fresh, columns=_PROFILE_COLUMNS)
        if not records:
            return
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
