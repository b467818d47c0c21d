"""Measure the cohorts and the programme health at scale (not part of `make bench`'s scenarios):
a scratch embedded PostgreSQL, the insights migrations, `bench.member_figures_data.load_facts`
(and a tenth as many coupons redeemed), then the stored months rebuilt from the facts (what the
migration's backfill does), the whole-month reads (stored) against the same figures computed
from the facts, and one member's recompute of its months.

    .venv/bin/python -m bench.insights_months --members 100000 --postings 2000000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loyalty_devstack.embedded import EmbeddedPostgres
from loyalty_insights.domain.periods import Period
from loyalty_insights.service_layer import figures
from loyalty_insights.service_layer.uow import InsightsUnitOfWork
from loyalty_kit import db
from loyalty_kit.db import driver_connection
from loyalty_kit.migrations import upgrade
from sqlalchemy.engine import make_url

from bench.member_figures_data import UNITS, load_facts, member_id


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


async def main(members: int, postings: int, data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir, keep=False)
    server = make_url(pg.start().replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        await db.ensure_database(server, "insights_bench")
        engine = db.create_engine(server.set(database="insights_bench"), pool_size=4)
        await upgrade(engine, "loyalty_insights:migrations")
        sessions = db.session_factory(engine)

        def uow(read_only: bool = False) -> InsightsUnitOfWork:
            return InsightsUnitOfWork(sessions, "bench", read_only=read_only)

        now = datetime.now(UTC)
        began = time.perf_counter()
        async with uow() as work:
            conn = await driver_connection(work.session)
            loaded = await load_facts(conn, members, postings, as_of=now, ledger=False)
            await conn.execute(
                "INSERT INTO activity (member_id, kind, event_id, unit, occurred_at, spend, "
                "currency) SELECT member_id, 'coupon', 'c' || event_id, unit, occurred_at, 0, '' "
                "FROM activity WHERE random() < 0.1"
            )
            await work.commit()
        print(
            f"loaded {loaded} (and a tenth as many coupons) in {time.perf_counter() - began:.0f} s",
            flush=True,
        )

        began = time.perf_counter()
        async with uow() as work:
            await work.month_counts.rebuild()
            await work.commit()
        print(f"stored months rebuilt from the facts: {time.perf_counter() - began:.1f} s")
        async with uow(read_only=True) as work:  # autocommit: VACUUM runs outside a transaction
            conn = await driver_connection(work.session)
            for table in ("member_months", "member_joins", "month_counts", "cohort_counts"):
                await conn.execute(f"VACUUM ANALYZE {table}")
            sizes = {
                t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                for t in ("member_months", "month_counts", "cohort_counts")
            }
        print(f"rows: {sizes}", flush=True)

        # The trailing twelve whole months.
        end = datetime(now.year, now.month, 1, tzinfo=UTC)
        start = datetime(end.year - 1, end.month, 1, tzinfo=UTC)
        whole = Period(start, end)

        async def timed(
            label: str, read: Callable[[InsightsUnitOfWork], Awaitable[Any]], times: int
        ) -> None:
            samples = []
            for _ in range(times):
                began = time.perf_counter()
                async with uow(read_only=True) as work:
                    await read(work)
                samples.append(time.perf_counter() - began)
            print(f"{label}: {_ms(samples)}", flush=True)

        for unit in ("", UNITS[0]):
            await reads(timed, whole, unit)

        single: list[float] = []
        for i in range(100):
            began = time.perf_counter()
            async with uow() as work:
                await work.month_counts.recompute([member_id((i * 4999) % members)])
                await work.commit()
            single.append(time.perf_counter() - began)
        print(f"one member's months recomputed (own transaction): {_ms(single)}", flush=True)
        batch: list[float] = []
        for i in range(5):
            began = time.perf_counter()
            async with uow() as work:
                await work.month_counts.recompute(
                    [member_id((i * 997 + k * 191) % members) for k in range(500)]
                )
                await work.commit()
            batch.append(time.perf_counter() - began)
        print(f"a batch of 500 members' months recomputed: {_ms(batch)}", flush=True)
        await engine.dispose()
    finally:
        pg.stop()


async def reads(timed: Callable[..., Awaitable[None]], whole: Period, unit: str) -> None:
    """A unit's (or the group's) cohorts and health over the period, stored and from the
    facts."""
    name = unit or "group"

    async def cohorts_from_facts(w: InsightsUnitOfWork) -> Any:
        return await figures.cohorts_from_facts(w, whole, unit)

    async def cohorts(w: InsightsUnitOfWork) -> Any:
        return await figures.cohorts(w, whole, unit)

    async def activity_from_facts(w: InsightsUnitOfWork) -> Any:
        return await w.figures.health_activity(whole.start, whole.end, unit, whole.month_ends())

    async def activity(w: InsightsUnitOfWork) -> Any:
        return await w.month_counts.health_months(unit, whole.months())

    async def health(w: InsightsUnitOfWork) -> Any:
        return await figures.programme_health(w, whole, unit)

    async def health_from_facts(w: InsightsUnitOfWork) -> Any:
        return await figures.health_from_facts(w, whole, unit)

    await timed(f"cohorts, {name}, from the facts", cohorts_from_facts, 3)
    await timed(f"cohorts, {name}, stored", cohorts, 20)
    await timed(f"health members/active/redeeming, {name}, from the facts", activity_from_facts, 3)
    await timed(f"health members/active/redeeming, {name}, stored", activity, 20)
    await timed(f"programme health, {name}, all from the facts", health_from_facts, 3)
    await timed(f"programme health, {name}, as served (tiers, benefits from facts)", health, 3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--postings", type=int, default=2_000_000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="insights-months-") as scratch:
        asyncio.run(main(arguments.members, arguments.postings, Path(scratch)))
