"""A population of identity members, bulk-loaded with COPY exactly as the service writes them.

Member `i` of a `Population` has the mainland mobile number `139` + 8 digits (a permutation of
`i`, so unique), stored as E.164 `+86139…`, and a random-looking version-4 member id derived
from `i` with a keyed hash, so a client can pick a member at random and check the answer
without keeping a million ids. Every member gets what `MemberRepository.add` writes for a
registration with one phone and an empty profile: a `members` row (active, unit `mall`,
channel `CHANNEL_POS`), its own random data key wrapped by the master key (`member_keys`), the
phone blind-indexed and sealed with the data key (`identities`) and an empty `profiles` row.
Not written: the registration's outbox event and idempotency key (the relay would publish a
million events during the measurement).

Rows are made and copied by worker processes (one per core, `copy_records_to_table`, one
transaction per chunk of `CHUNK` members), since sealing is Python work. The primary keys and
the unique constraint on (identity_type, blind_index) are dropped before the load and added
back after it under the same names (one sort each instead of a million random B-tree inserts;
on the 2-core machine 1,000,000 members took 45 s this way, 61 s with the constraints in
place, 57 s with three workers), and the indexes and constraints are checked to be the ones
the migration made. Then ANALYZE.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any

import asyncpg
from loyalty_identity.adapters.crypto import Keyring, new_key_text, seal
from loyalty_identity.domain.identities import ChannelIdentity, IdentityKind, IdentityType
from loyalty_identity.domain.identities import normalise as normalise_identity

CHUNK = 25_000  # members per COPY transaction (one task of a worker)
PROGRESS_EVERY = 100_000
STRIDE = 61_803_399  # coprime with 10**8: i -> (i * STRIDE + offset) mod 10**8 is one-to-one
NUMBERS = 10**8
PHONE_TYPE = IdentityType("phone", IdentityKind.PHONE)

MEMBER_COLUMNS = (
    "member_id",
    "state",
    "merged_into",
    "registered_unit",
    "registered_channel",
    "suspension_reason",
    "created_at",
    "updated_at",
)
KEY_COLUMNS = ("member_id", "key_id", "wrapped_key")
IDENTITY_COLUMNS = ("member_id", "identity_type", "blind_index", "value_sealed", "linked_at")
PROFILE_COLUMNS = (
    "member_id",
    "full_name_sealed",
    "gender",
    "birthday_sealed",
    "region",
    "preferred_language",
)

# Dropped before the load and added back after it, exactly as migration 0002 names them.
CONSTRAINTS = (
    ("members", "members_pkey", "PRIMARY KEY (member_id)"),
    ("member_keys", "member_keys_pkey", "PRIMARY KEY (member_id)"),
    ("profiles", "profiles_pkey", "PRIMARY KEY (member_id)"),
    ("identities", "identities_pkey", "PRIMARY KEY (member_id, identity_type, blind_index)"),
    ("identities", "identities_bound_once", "UNIQUE (identity_type, blind_index)"),
)
TABLES = ("members", "member_keys", "identities", "profiles")

SCHEMA_QUERY = """
SELECT 'index ' || indexdef AS item FROM pg_indexes
 WHERE schemaname = 'public' AND tablename = ANY($1::text[])
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE conrelid::regclass::text = ANY($1::text[])
ORDER BY 1
"""


@dataclass(frozen=True)
class Population:
    """`count` members, reproducible from a few random numbers (picklable for the workers)."""

    count: int
    salt: bytes  # of the member ids
    offset: int  # of the phone numbers
    keys: str  # LOYALTY_IDENTITY_KEYS
    blind_index_key: str  # LOYALTY_IDENTITY_BLIND_INDEX_KEY

    @classmethod
    def new(cls, count: int) -> Population:
        return cls(
            count=count,
            salt=secrets.token_bytes(16),
            offset=secrets.randbelow(NUMBERS),
            keys=f"bench1:{new_key_text()}",
            blind_index_key=new_key_text(),
        )

    def keyring(self) -> Keyring:
        return Keyring.parse(self.keys, self.blind_index_key)

    def env(self) -> dict[str, str]:
        """The service's settings for the same keys."""
        return {
            "LOYALTY_IDENTITY_KEYS": self.keys,
            "LOYALTY_IDENTITY_BLIND_INDEX_KEY": self.blind_index_key,
        }

    def local_number(self, i: int) -> str:
        """'139' and 8 digits, as a member would type it."""
        return f"139{(i * STRIDE + self.offset) % NUMBERS:08d}"

    def e164(self, i: int) -> str:
        return f"+86{self.local_number(i)}"

    def spelling(self, i: int, variant: int) -> str:
        """Ways people write the number: 13912345678, +8613912345678, +86 139 1234 5678."""
        local = self.local_number(i)
        if variant % 3 == 0:
            return local
        if variant % 3 == 1:
            return f"+86{local}"
        return f"+86 {local[:3]} {local[3:7]} {local[7:]}"

    def member_id(self, i: int) -> str:
        digest = hashlib.blake2b(i.to_bytes(8, "big"), key=self.salt, digest_size=16).digest()
        return str(uuid.UUID(bytes=digest, version=4))


@dataclass(frozen=True)
class LoadStats:
    members: int
    seconds: float  # rows made and copied, constraints rebuilt, ANALYZE
    copy_seconds: float
    constraint_seconds: float
    analyze_seconds: float
    workers: int

    @property
    def members_per_s(self) -> float:
        return self.members / self.seconds if self.seconds > 0 else 0.0

    def extra(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "load_seconds": round(self.seconds, 1),
            "load_members_per_s": round(self.members_per_s),
            "load_copy_seconds": round(self.copy_seconds, 1),
            "load_constraint_seconds": round(self.constraint_seconds, 1),
            "load_analyze_seconds": round(self.analyze_seconds, 1),
            "load_workers": self.workers,
        }


def check_normalisation(population: Population, sample: int = 20) -> None:
    """The numbers are what the service's own normalisation makes of every spelling."""
    for i in range(min(sample, population.count)):
        for variant in range(3):
            got = normalise_identity(PHONE_TYPE, population.spelling(i, variant), "value").value
            if got != population.e164(i):
                raise AssertionError(f"{population.spelling(i, variant)!r} normalises to {got!r}")


Rows = list[tuple[Any, ...]]


def _rows(population: Population, start: int, stop: int) -> tuple[Rows, Rows, Rows, Rows]:
    """The four tables' rows for members start..stop-1, as MemberRepository.add makes them."""
    keyring = population.keyring()
    now = datetime.now(UTC)
    members: Rows = []
    keys: Rows = []
    identities: Rows = []
    profiles: Rows = []
    for i in range(start, stop):
        member_id = population.member_id(i)
        phone = ChannelIdentity("phone", population.e164(i))
        data_key = keyring.new_data_key()
        key_id, wrapped = keyring.wrap(member_id, data_key)
        members.append((member_id, "active", None, "mall", "CHANNEL_POS", "", now, now))
        keys.append((member_id, key_id, wrapped))
        identities.append(
            (
                member_id,
                phone.type,
                keyring.blind_index(phone),
                seal(data_key, phone.value, f"{member_id}/identity/{phone.type}"),
                now,
            )
        )
        profiles.append((member_id, None, "unspecified", None, "", ""))
    return members, keys, identities, profiles


async def _copy(connect: dict[str, Any], population: Population, start: int, stop: int) -> None:
    members, keys, identities, profiles = _rows(population, start, stop)
    conn = await asyncpg.connect(**connect)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("members", records=members, columns=MEMBER_COLUMNS)
            await conn.copy_records_to_table("member_keys", records=keys, columns=KEY_COLUMNS)
            await conn.copy_records_to_table(
                "identities", records=identities, columns=IDENTITY_COLUMNS
            )
            await conn.copy_records_to_table("profiles", records=profiles, columns=PROFILE_COLUMNS)
    finally:
        await conn.close()


def copy_chunk(connect: dict[str, Any], population: Population, start: int, stop: int) -> int:
    """In a worker process: make and COPY members start..stop-1; how many."""
    asyncio.run(_copy(connect, population, start, stop))
    return stop - start


async def _schema(conn: asyncpg.Connection) -> list[str]:
    return [row["item"] for row in await conn.fetch(SCHEMA_QUERY, list(TABLES))]


async def load(
    connect: dict[str, Any],
    population: Population,
    *,
    workers: int | None = None,
    progress: Callable[[str], None] = print,
) -> LoadStats:
    """COPY `population` into a migrated identity database whose member tables are empty."""
    workers = workers or os.cpu_count() or 2
    check_normalisation(population)
    conn = await asyncpg.connect(**connect)
    try:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM members)"):
            raise RuntimeError("the identity database already has members")
        schema = await _schema(conn)
        for table, name, _ in CONSTRAINTS:
            await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")

        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        done = 0
        reported = 0
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            chunks = [
                loop.run_in_executor(
                    pool,
                    copy_chunk,
                    connect,
                    population,
                    start,
                    min(start + CHUNK, population.count),
                )
                for start in range(0, population.count, CHUNK)
            ]
            for finished in asyncio.as_completed(chunks):
                done += await finished
                if done // PROGRESS_EVERY > reported or done == population.count:
                    reported = done // PROGRESS_EVERY
                    elapsed = time.perf_counter() - started
                    progress(
                        f"copied {done:,}/{population.count:,} members "
                        f"({done / elapsed:,.0f}/s, {elapsed:.1f}s)"
                    )
        copied = time.perf_counter()

        await conn.execute("SET maintenance_work_mem = '512MB'")
        for table, name, definition in CONSTRAINTS:
            await conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        rebuilt = time.perf_counter()
        progress(f"constraints rebuilt in {rebuilt - copied:.1f}s")
        if await _schema(conn) != schema:
            raise AssertionError("the member tables' indexes differ from the migration's")
        await conn.execute(f"ANALYZE {', '.join(TABLES)}")
        analysed = time.perf_counter()
    finally:
        await conn.close()
    stats = LoadStats(
        members=population.count,
        seconds=analysed - started,
        copy_seconds=copied - started,
        constraint_seconds=rebuilt - copied,
        analyze_seconds=analysed - rebuilt,
        workers=workers,
    )
    progress(
        f"loaded {stats.members:,} members in {stats.seconds:.1f}s "
        f"({stats.members_per_s:,.0f}/s; ANALYZE {stats.analyze_seconds:.1f}s)"
    )
    return stats
