"""Huayue's history as insights' facts, for the insights benchmarks (`scenarios/insights.py`).

`members` members (default 1,000,000) over three years up to `NOW`, each with `POSTINGS` (20)
ledger postings: 16 earns (each a purchase), 4 redemptions (each half of the lot earned just
before), and where the first lot's 24 months have run out, an expiry of it instead of the last
earn. So 20,000,000 postings, as many lot movements and about 17,000,000 activity rows at the
default size, plus registrations (a twentieth imported), three consents each, tier changes
(silver, gold, platinum for some), benefit uses (a quarter of members) and merges (one member in
a hundred absorbed by the one before it).

How: the members' own draws (home unit, when they joined, when a lapsing member stopped) come
from numpy with a fixed seed and are `COPY`ed into a helper table `bench_members`; the
postings are expanded from it inside PostgreSQL, chunk by chunk of members
(`INSERT ... SELECT` over `generate_series`, draws from `hashint8extended(i * 20 + k, seed)`),
so no row crosses the wire or passes through Python. Keys and indexes are dropped during the
load and built after it, then the facts are vacuumed and analysed. Deterministic: the same
members and seed give the same facts.

The loaded database is kept between runs when the server outlives the run
(`LOYALTY_DATABASE_URL`): it is named `insightsbench_<members>_<seed>_insights`, outside the
run's prefix, and marked loaded in `bench_loaded`; a run finding the mark reuses it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np
from loyalty_insights.app import SPEC
from loyalty_kit import db
from loyalty_kit.db import asyncpg_params
from loyalty_kit.migrations import upgrade_database
from loyalty_kit.settings import Settings
from sqlalchemy.engine import URL

NOW = datetime(2026, 11, 1, tzinfo=UTC)  # the history's end; figures ask for the year before
START = datetime(2023, 11, 1, tzinfo=UTC)  # three years of purchases
PERIOD = (datetime(2025, 11, 1, tzinfo=UTC), NOW)  # the dashboards' default range
POSTINGS = 20  # per member
CHUNK = 100_000  # members expanded per statement
SEED = 18
UNITS = ("mall", "hotel", "cinema", "estate")
HOME_SHARES = (0.5, 0.2, 0.2, 0.1)
FORMAT = 1  # bumped when the generated facts change: a kept database of another format is reloaded

_FACT_KEYS = (
    ("ledger_postings", "ledger_postings_pkey", "PRIMARY KEY (member_id, posting_id)"),
    ("lot_movements", "lot_movements_pkey", "PRIMARY KEY (member_id, posting_id, lot_id)"),
    ("activity", "activity_pkey", "PRIMARY KEY (member_id, kind, event_id)"),
    ("registrations", "registrations_pkey", "PRIMARY KEY (member_id)"),
    ("consents", "consents_pkey", "PRIMARY KEY (member_id, purpose)"),
    (
        "tier_changes",
        "tier_changes_pkey",
        "PRIMARY KEY (member_id, effective_at, to_tier, reason)",
    ),
)
_FACT_INDEXES = (
    "CREATE INDEX ledger_postings_posted ON ledger_postings (posted_at)",
    "CREATE INDEX lot_movements_posted ON lot_movements (posted_at)",
    "CREATE INDEX activity_occurred ON activity (occurred_at)",
)
_FACT_TABLES = (
    "ledger_postings",
    "lot_movements",
    "activity",
    "registrations",
    "consents",
    "tier_changes",
    "member_merges",
    "benefit_facts",
)

_LOAD_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET synchronous_commit = off",
    "SET work_mem = '256MB'",
    "SET maintenance_work_mem = '1GB'",
)

MEMBER_ID = "md5('m' || {i})::uuid::text"

# One row per (member, posting number k) of a chunk of members: its draw, unit, time, spend and
# points, and the same for the posting before it (what a redemption takes half of).
_DRAWS = f"""
CREATE TEMP TABLE bench_draws ON COMMIT DROP AS
WITH base AS (
    SELECT m.i, k, m.home, m.joined, m.last_at,
           abs(hashint8extended(m.i::bigint * {POSTINGS} + k, {{seed}})) AS r
    FROM bench_members m CROSS JOIN generate_series(0, {POSTINGS - 1}) AS k
    WHERE m.i >= {{low}} AND m.i < {{high}}
), drawn AS (
    SELECT i, k, r, home, joined,
           CASE WHEN r % 100 < 65 THEN home
                ELSE (ARRAY['mall', 'hotel', 'cinema', 'estate'])[1 + ((r >> 8) % 4)::int]
           END AS unit,
           joined + (last_at - joined) * ((k + ((r >> 16) % 1000) / 1000.0) / {POSTINGS})::float8
             AS occurred_at
    FROM base
), priced AS (
    SELECT *, CASE unit WHEN 'mall' THEN 50 + (r >> 24) % 60000 / 100.0
                        WHEN 'hotel' THEN 400 + (r >> 24) % 200000 / 100.0
                        WHEN 'cinema' THEN 40 + (r >> 24) % 15000 / 100.0
                        ELSE 1000 + (r >> 24) % 2000000 / 100.0 END AS spend
    FROM drawn
)
SELECT i, k, unit, occurred_at, spend::numeric(12, 2) AS spend,
       floor(spend * CASE unit WHEN 'mall' THEN 1 WHEN 'hotel' THEN 2 WHEN 'cinema' THEN 1.5
                               ELSE 0.1 END)::bigint AS points,
       date_trunc('month', occurred_at) + interval '25 months' AS expires_at,
       lag(unit) OVER w AS prev_unit,
       lag(floor(spend * CASE unit WHEN 'mall' THEN 1 WHEN 'hotel' THEN 2 WHEN 'cinema' THEN 1.5
                                   ELSE 0.1 END)::bigint) OVER w AS prev_points,
       lag(date_trunc('month', occurred_at) + interval '25 months') OVER w AS prev_expires,
       first_value(unit) OVER w AS first_unit,
       first_value(floor(spend * CASE unit WHEN 'mall' THEN 1 WHEN 'hotel' THEN 2
                                           WHEN 'cinema' THEN 1.5 ELSE 0.1 END)::bigint) OVER w
         AS first_points,
       first_value(date_trunc('month', occurred_at) + interval '25 months') OVER w
         AS first_expires,
       CASE WHEN k % 5 = 3 THEN 'redeem'
            WHEN k = {POSTINGS - 1} AND first_value(date_trunc('month', occurred_at)
                 + interval '25 months') OVER w < '{{now}}' THEN 'expire'
            ELSE 'earn' END AS kind,
       md5(i || ':' || k)::uuid::text AS posting_id,
       md5(i || ':' || (k - 1))::uuid::text AS prev_posting_id,
       md5(i || ':0')::uuid::text AS first_posting_id,
       {MEMBER_ID.format(i="i")} AS member_id
FROM priced
WINDOW w AS (PARTITION BY i ORDER BY k)
"""

_POSTINGS = """
INSERT INTO ledger_postings (member_id, posting_id, kind, unit, points, posted_at, occurred_at)
SELECT member_id, posting_id, kind,
       CASE WHEN kind = 'expire' THEN 'group' ELSE unit END,
       CASE kind WHEN 'earn' THEN points WHEN 'redeem' THEN -(prev_points / 2)
                 ELSE -first_points END,
       CASE WHEN kind = 'expire' THEN first_expires ELSE occurred_at END,
       CASE WHEN kind = 'expire' THEN first_expires ELSE occurred_at END
FROM bench_draws
"""

_MOVEMENTS = """
INSERT INTO lot_movements (member_id, posting_id, lot_id, kind, posting_points, earned_unit,
                           unit, points, posted_at, expires_at)
SELECT member_id, posting_id, lot_id, kind, moved, earned_unit, unit, moved, posted_at, expires
FROM (
    SELECT member_id, posting_id, kind,
           CASE kind WHEN 'earn' THEN posting_id WHEN 'redeem' THEN prev_posting_id
                     ELSE first_posting_id END AS lot_id,
           CASE kind WHEN 'earn' THEN points WHEN 'redeem' THEN -(prev_points / 2)
                     ELSE -first_points END AS moved,
           CASE kind WHEN 'earn' THEN unit WHEN 'redeem' THEN prev_unit ELSE first_unit END
             AS earned_unit,
           CASE WHEN kind = 'expire' THEN 'group' ELSE unit END AS unit,
           CASE WHEN kind = 'expire' THEN first_expires ELSE occurred_at END AS posted_at,
           CASE kind WHEN 'earn' THEN expires_at WHEN 'redeem' THEN prev_expires
                     ELSE first_expires END AS expires
    FROM bench_draws
) m
"""

_ACTIVITY = """
INSERT INTO activity (member_id, kind, event_id, unit, occurred_at, spend, currency)
SELECT member_id, CASE kind WHEN 'earn' THEN 'purchase' ELSE 'redemption' END, posting_id, unit,
       occurred_at, CASE WHEN kind = 'earn' THEN spend ELSE 0 END,
       CASE WHEN kind = 'earn' THEN 'CNY' ELSE '' END
FROM bench_draws WHERE kind <> 'expire'
UNION ALL
SELECT member_id, 'consumption', 'use-' || posting_id, unit, occurred_at, 0, ''
FROM bench_draws WHERE k = 10 AND i % 4 = 0
"""

_BENEFITS = """
INSERT INTO benefit_facts (member_id, kind, fact_id, code, unit, occurred_at)
SELECT member_id, 'consumed', 'use-' || posting_id,
       CASE unit WHEN 'hotel' THEN 'late_checkout' ELSE 'mall_discount' END, unit, occurred_at
FROM bench_draws WHERE k = 10 AND i % 4 = 0
"""

# Member-level facts from `bench_members`, all members at once.
_MEMBER_FACTS = (
    f"""
    INSERT INTO registrations (member_id, unit, registered_at, imported)
    SELECT {MEMBER_ID.format(i="i")}, home, joined, imported FROM bench_members
    """,
    f"""
    INSERT INTO consents (member_id, purpose, granted, changed_at)
    SELECT {MEMBER_ID.format(i="i")}, p.purpose,
           abs(hashint8extended(i::bigint * 3 + p.n, {{seed}})) % 3 <> 0, joined
    FROM bench_members CROSS JOIN unnest(
        ARRAY['marketing_sms', 'personalised_offers', 'data_sharing'], ARRAY[0, 1, 2]
    ) AS p (purpose, n)
    """,
    # A tenth reach silver a year in, a third of them gold a year later, a tenth of those
    # platinum half a year after that; each change only if it happened before NOW.
    f"""
    INSERT INTO tier_changes (member_id, effective_at, to_tier, reason, from_tier)
    SELECT {MEMBER_ID.format(i="i")}, t.at, t.to_tier, 'qualified', t.from_tier
    FROM bench_members m CROSS JOIN LATERAL (VALUES
        ('silver', 'basic', m.joined + interval '365 days', 10),
        ('gold', 'silver', m.joined + interval '730 days', 30),
        ('platinum', 'gold', m.joined + interval '910 days', 300)
    ) AS t (to_tier, from_tier, at, every)
    WHERE m.i % t.every = 7 AND t.at < '{{now}}'
    """,
    f"""
    INSERT INTO member_merges (absorbed_id, survivor_id, merged_at)
    SELECT {MEMBER_ID.format(i="i")}, {MEMBER_ID.format(i="i - 1")},
           '{{now}}'::timestamptz - (i % 300) * interval '1 day'
    FROM bench_members WHERE i % 100 = 99
    """,
)


@dataclass(frozen=True)
class Loaded:
    """A loaded database of insights' facts."""

    url: URL
    prefix: str  # the database prefix that makes `<prefix>insights` this database
    members: int
    seed: int
    seconds: float  # what loading took (0 when a kept database was reused)
    reused: bool
    rows: dict[str, int]


def cache_prefix(members: int, seed: int) -> str:
    return f"insightsbench_{members}_{seed}_"


def member_draws(members: int, seed: int) -> list[tuple[int, str, float, float, bool]]:
    """(i, home unit, joined, stopped (epoch seconds), imported) of every member."""
    rng = np.random.default_rng(seed)
    start, end = START.timestamp(), NOW.timestamp()
    joined = start + rng.uniform(0, end - start - 7 * 86_400, members)
    lapsing = rng.random(members) < 0.3
    stopped = np.where(lapsing, joined + (end - joined) * rng.uniform(0.1, 0.9, members), end)
    homes = np.asarray(UNITS)[rng.choice(len(UNITS), size=members, p=HOME_SHARES)]
    imported = rng.random(members) < 0.05
    return list(
        zip(
            range(members),
            homes.tolist(),
            joined.tolist(),
            stopped.tolist(),
            imported.tolist(),
            strict=True,
        )
    )


async def _migrate(url: URL) -> None:
    assert SPEC.migrations is not None
    await upgrade_database(url, SPEC.migrations)


async def _reusable(conn: asyncpg.Connection, members: int, seed: int) -> bool:
    exists = await conn.fetchval("SELECT to_regclass('bench_loaded') IS NOT NULL")
    if not exists:
        return False
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM bench_loaded WHERE members = $1 AND seed = $2 AND format = $3",
            members,
            seed,
            FORMAT,
        )
    )


async def _rows(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows per fact table (the planner's count after ANALYZE: exact enough, and instant)."""
    rows = await conn.fetch(
        "SELECT relname, reltuples::bigint AS n FROM pg_class WHERE relname = ANY($1::text[])",
        list(_FACT_TABLES),
    )
    return {r["relname"]: int(r["n"]) for r in rows}


async def load(settings: Settings, members: int, seed: int = SEED, log: bool = True) -> Loaded:
    """The facts of `members` members in `<cache_prefix>insights`, loaded unless already there."""
    prefix = cache_prefix(members, seed)
    await db.ensure_database(settings.server_url, f"{prefix}insights")
    url = settings.model_copy(update={"database_prefix": prefix}).service_database_url("insights")
    await _migrate(url)
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        if await _reusable(conn, members, seed):
            return Loaded(url, prefix, members, seed, 0.0, True, await _rows(conn))
        started = time.perf_counter()
        await _fill(conn, members, seed, log)
        seconds = time.perf_counter() - started
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_loaded "
            "(members int, seed int, format int, seconds float8, loaded_at timestamptz)"
        )
        await conn.execute(
            "INSERT INTO bench_loaded VALUES ($1, $2, $3, $4, now())",
            members,
            seed,
            FORMAT,
            seconds,
        )
        return Loaded(url, prefix, members, seed, seconds, False, await _rows(conn))
    finally:
        await conn.close()


def _say(log: bool, text: str, since: float) -> None:
    if log:
        import sys

        print(f"bench: insights data: {text} ({time.perf_counter() - since:.1f}s)", file=sys.stderr)


async def _fill(conn: asyncpg.Connection, members: int, seed: int, log: bool) -> None:
    started = time.perf_counter()
    for setting in _LOAD_SETTINGS:
        await conn.execute(setting)
    await conn.execute("DROP TABLE IF EXISTS bench_loaded")
    await conn.execute(f"TRUNCATE {', '.join(_FACT_TABLES)}, programmes, known_units")
    for table, key, _ in _FACT_KEYS:
        await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {key}")
    for statement in _FACT_INDEXES:
        await conn.execute(f"DROP INDEX IF EXISTS {statement.split()[2]}")
    await conn.execute(
        "INSERT INTO programmes VALUES (1, $1, 'CNY', 0.01)", START.replace(year=2020)
    )
    await conn.executemany("INSERT INTO known_units VALUES ($1)", [(u,) for u in UNITS])
    await conn.execute("DROP TABLE IF EXISTS bench_members")
    await conn.execute(
        "CREATE UNLOGGED TABLE bench_members (i int PRIMARY KEY, home text, joined_s float8, "
        "stopped_s float8, imported bool)"
    )
    await conn.copy_records_to_table(
        "bench_members",
        records=member_draws(members, seed),
        columns=("i", "home", "joined_s", "stopped_s", "imported"),
    )
    await conn.execute(
        "ALTER TABLE bench_members ADD COLUMN joined timestamptz, ADD COLUMN last_at timestamptz"
    )
    await conn.execute(
        "UPDATE bench_members "
        "SET joined = to_timestamp(joined_s), last_at = to_timestamp(stopped_s)"
    )
    await conn.execute("ANALYZE bench_members")
    _say(log, f"{members:,} members drawn and copied", started)
    for statement in _MEMBER_FACTS:
        await conn.execute(statement.format(seed=seed, now=NOW.isoformat()))
    _say(log, "registrations, consents, tier changes, merges", started)
    for low in range(0, members, CHUNK):
        async with conn.transaction():
            await conn.execute(
                _DRAWS.format(
                    low=low, high=min(low + CHUNK, members), seed=seed, now=NOW.isoformat()
                )
            )
            for statement in (_POSTINGS, _MOVEMENTS, _ACTIVITY, _BENEFITS):
                await conn.execute(statement)
        _say(log, f"postings of members {low:,}-{min(low + CHUNK, members):,}", started)
    for table, key, definition in _FACT_KEYS:
        await conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {key} {definition}")
        _say(log, f"{table} key", started)
    for statement in _FACT_INDEXES:
        await conn.execute(statement)
    _say(log, "indexes", started)
    await conn.execute("DROP TABLE bench_members")
    for table in _FACT_TABLES:
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    _say(log, "vacuumed and analysed", started)
