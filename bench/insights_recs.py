"""Personalised offers: the offline evaluation and the request's speed (issue 19).

A history with planted co-usage: offers fall in clusters, each member mostly uses the offers of
one cluster, now and then a popular offer of any (a Zipf draw); the uses are spread over a
year. The evaluation trains on the uses before the split (80% of the year) and holds out the
rest: precision@5 of the recommender (`domain/recommendations.py`) against the popularity
baseline, over the members with a new offer held out.

The speed: the same history at `--members` members in a scratch embedded PostgreSQL, the
offers' tables rebuilt (`OfferStore.rebuild`, what each refresh does), then `--requests`
recommendations for random members through the use case in its read-only unit of work (what
the servicer runs, without gRPC) against the raw ceiling, the same statements over a plain
asyncpg connection; p50/p99 of each. One JSON object on stdout (and `--out`).

    .venv/bin/python -m bench.insights_recs --members 100000
    .venv/bin/python -m bench.insights_recs --evaluate-only
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loyalty_devstack.embedded import EmbeddedPostgres
from loyalty_insights.adapters import offers
from loyalty_insights.adapters.member_figures import OFFERS_PURPOSE
from loyalty_insights.domain.recommendations import OfferKind, Use, evaluate
from loyalty_insights.domain.rfm import RfmSegment
from loyalty_insights.service_layer.recommendations import recommendations
from loyalty_insights.service_layer.uow import InsightsUnitOfWork
from loyalty_kit import db
from loyalty_kit.db import driver_connection
from loyalty_kit.migrations import upgrade
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.standalone import emit

UNITS = ("mall", "hotel", "cinema")
YEAR = timedelta(days=365)


def planted_history(
    members: int,
    *,
    end: datetime,
    clusters: int = 12,
    per_cluster: int = 6,
    uses: tuple[int, int] = (2, 8),
    noise: float = 0.25,
    seed: int = 19,
    prefix: str = "",
) -> list[Use]:
    """`members` members' uses over the year before `end`: each member keeps to one cluster
    of `per_cluster` offers (a cluster's offers are at one unit), with `noise` of its uses a
    popular offer of any cluster (Zipf by rank). Member IDs are UUIDs from `seed`; offer codes
    start with `prefix` (tests keep theirs apart)."""
    rng = random.Random(seed)
    catalogue = [
        (OfferKind.REWARD if i % 2 else OfferKind.COUPON, f"{prefix}o{c:02d}-{i}")
        for c in range(clusters)
        for i in range(per_cluster)
    ]
    weights = [1 / (rank + 1) for rank in range(len(catalogue))]
    popular_order = rng.sample(catalogue, len(catalogue))
    found: list[Use] = []
    for _ in range(members):
        member_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        cluster = rng.randrange(clusters)
        own = catalogue[cluster * per_cluster : (cluster + 1) * per_cluster]
        for _ in range(rng.randint(*uses)):
            if rng.random() < noise:
                offer = rng.choices(popular_order, weights)[0]
            else:
                offer = rng.choice(own)
            found.append(Use(member_id, offer, end - YEAR * rng.random()))
    return found


def unit_of(code: str, prefix: str = "") -> str:
    """A planted offer's unit: its cluster's."""
    return UNITS[int(code.removeprefix(prefix)[1:3]) % len(UNITS)]


def evaluation(members: int, end: datetime, seed: int = 19) -> dict[str, Any]:
    history = planted_history(members, end=end, seed=seed)
    split = end - YEAR * 0.2
    began = time.perf_counter()
    found = evaluate(history, split, k=5)
    return {
        "members": members,
        "uses": len(history),
        "evaluated_members": found.members,
        "precision_at_5": round(found.recommender, 4),
        "popularity_precision_at_5": round(found.popularity, 4),
        "by_reason": found.by_reason,
        "seconds": round(time.perf_counter() - began, 2),
    }


async def load(conn: Any, history: Sequence[Use], now: datetime) -> None:
    """The uses as benefit facts (coupons redeemed, rewards redeemed), each member registered
    with an RFM segment in `member_figures`, 2% of members without the offers' consent."""
    rng = random.Random(7)
    rows = [
        (
            use.member_id,
            "reward_redeemed" if use.offer[0] is OfferKind.REWARD else "coupon_redeemed",
            f"f{i}" if use.offer[0] is OfferKind.REWARD else f"c{i}:o{i}",
            use.offer[1],
            unit_of(use.offer[1]),
            use.at,
        )
        for i, use in enumerate(history)
    ]
    await conn.copy_records_to_table(
        "benefit_facts",
        records=rows,
        columns=["member_id", "kind", "fact_id", "code", "unit", "occurred_at"],
    )
    members = sorted({use.member_id for use in history})
    segments = [s.value for s in RfmSegment]
    await conn.copy_records_to_table(
        "member_figures",
        records=[(m, now, rng.choice(segments)) for m in members],
        columns=["member_id", "updated_at", "rfm_segment"],
    )
    await conn.copy_records_to_table(
        "consents",
        records=[(m, OFFERS_PURPOSE, False, now) for m in members if rng.random() < 0.02],
        columns=["member_id", "purpose", "granted", "changed_at"],
    )
    await conn.execute(
        "INSERT INTO known_units SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", list(UNITS)
    )
    await conn.execute("ANALYZE")


async def raw_request(conn: Any, member_id: str, size: int) -> int:
    """The request's statements on a plain connection: the member, its facts, its offers'
    similarity rows, the segment's and the group's popular offers."""
    row = await conn.fetchrow(offers.MEMBER_STATEMENT, member_id, OFFERS_PURPOSE)
    facts = await conn.fetch(offers.FACTS_STATEMENT, list(row["family"]))
    used = sorted({(f["kind"], f["code"]) for f in facts})
    kinds = ["reward" if k == "reward_redeemed" else "coupon" for k, _ in used]
    found = await conn.fetch(offers.NEIGHBOURS_STATEMENT, kinds, [c for _, c in used], "")
    if row["segment"]:
        found += await conn.fetch(offers.POPULAR_STATEMENT, "", row["segment"], size + len(used))
    found += await conn.fetch(offers.POPULAR_STATEMENT, "", "", size + len(used))
    return len(found)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, 2),
    }


@dataclass
class Prepared:
    """The history loaded and the offers' tables rebuilt in a database of the run's."""

    engine: AsyncEngine
    sessions: Any
    members: list[str]
    uses: int
    load_seconds: float
    rebuild_seconds: float
    rebuilt: dict[str, int]

    def uow(self, read_only: bool = False) -> InsightsUnitOfWork:
        return InsightsUnitOfWork(self.sessions, "bench", read_only=read_only)

    def asked(self, requests: int) -> list[str]:
        rng = random.Random(5)
        return [rng.choice(self.members) for _ in range(requests)]


async def prepare(url: URL, members: int) -> Prepared:
    engine = db.create_engine(url, pool_size=4)
    await upgrade(engine, "loyalty_insights:migrations")
    sessions = db.session_factory(engine)
    now = datetime.now(UTC)
    history = planted_history(members, end=now)
    began = time.perf_counter()
    async with InsightsUnitOfWork(sessions, "bench") as work:
        await load(await driver_connection(work.session), history, now)
        await work.commit()
    loaded = time.perf_counter() - began
    began = time.perf_counter()
    async with InsightsUnitOfWork(sessions, "bench") as work:
        rebuilt = await work.offers.rebuild(now)
        await work.commit()
    return Prepared(
        engine,
        sessions,
        sorted({use.member_id for use in history}),
        len(history),
        round(loaded, 1),
        round(time.perf_counter() - began, 2),
        asdict(rebuilt),
    )


async def _timed(asked: Sequence[str], call: Callable[[str], Awaitable[object]]) -> list[float]:
    for member_id in asked[:50]:  # warm the caches and the pool
        await call(member_id)
    samples = []
    for member_id in asked:
        t = time.perf_counter()
        await call(member_id)
        samples.append(time.perf_counter() - t)
    return samples


async def through_service(prepared: Prepared, requests: int) -> list[float]:
    """Seconds per request: the use case in its read-only unit of work, group-wide, 10 offers."""

    async def once(member_id: str) -> object:
        async with prepared.uow(read_only=True) as work:
            return await recommendations(work, member_id, "", 10)

    return await _timed(prepared.asked(requests), once)


async def raw(prepared: Prepared, requests: int) -> list[float]:
    """Seconds per request: the same statements on one plain connection."""
    async with prepared.uow(read_only=True) as work:
        conn = await driver_connection(work.session)
        return await _timed(prepared.asked(requests), lambda m: raw_request(conn, m, 10))


async def speed(members: int, requests: int, data_dir: Path) -> dict[str, Any]:
    pg = EmbeddedPostgres(data_dir, keep=False)
    server = make_url(pg.start().replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        await db.ensure_database(server, "insights_recs_bench")
        prepared = await prepare(server.set(database="insights_recs_bench"), members)
        service = await through_service(prepared, requests)
        plain = await raw(prepared, requests)
        await prepared.engine.dispose()
        return {
            "members": len(prepared.members),
            "uses": prepared.uses,
            "load_seconds": prepared.load_seconds,
            "rebuild_seconds": prepared.rebuild_seconds,
            "rebuilt": prepared.rebuilt,
            "requests": requests,
            "service": percentiles(service),
            "raw": percentiles(plain),
            "goal_p99_ms": 50,
        }
    finally:
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--evaluate-members", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "evaluation": evaluation(args.evaluate_members, datetime.now(UTC)),
    }
    if not args.evaluate_only:
        with tempfile.TemporaryDirectory(prefix="insights-recs-") as data_dir:
            result["speed"] = asyncio.run(speed(args.members, args.requests, Path(data_dir)))
    emit("insights_recs", result, args.out)


if __name__ == "__main__":
    main()
