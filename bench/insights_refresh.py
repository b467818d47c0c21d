"""Measure the members' figures at scale (not part of `make bench`'s scenarios yet): a scratch
embedded PostgreSQL, the insights migrations, `bench.insights_data.load_facts`, then a full
refresh, the standard GetRfm reads (counts; a page of a segment), and incremental recomputes.

    .venv/bin/python -m bench.insights_refresh --members 1000000 --postings 20000000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from loyalty_devstack.embedded import EmbeddedPostgres
from loyalty_insights.domain.figures import year_before
from loyalty_insights.domain.rfm import RfmSegment
from loyalty_insights.service_layer import figures, refresh
from loyalty_insights.service_layer.uow import InsightsUnitOfWork
from loyalty_kit import db
from loyalty_kit.db import driver_connection
from loyalty_kit.migrations import upgrade
from sqlalchemy.engine import make_url

from bench.member_figures_data import load_facts, member_id


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
            loaded = await load_facts(  # no ledger: the members' figures do not read it
                await driver_connection(work.session), members, postings, as_of=now, ledger=False
            )
            await work.commit()
        print(f"loaded {loaded} in {time.perf_counter() - began:.0f} s", flush=True)

        # One refresh step by step (what refresh_figures does), for where the time goes.
        async with uow() as work:
            steps = [time.perf_counter()]
            assert await work.member_figures.try_refresh_lock()
            since = await work.member_figures.since()
            as_of = datetime.now(UTC)
            refresh_id = await work.member_figures.next_refresh_id()
            await work.member_figures.stage(year_before(as_of), as_of, "CNY")
            steps.append(time.perf_counter())
            await work.member_figures.write(since, refresh_id)
            steps.append(time.perf_counter())
            await work.commit()
            steps.append(time.perf_counter())
        print(
            "refresh steps: stage {:.1f} s, write {:.1f} s, commit {:.1f} s".format(
                *(b - a for a, b in itertools.pairwise(steps))
            ),
            flush=True,
        )
        for attempt in (1, 2):
            async with uow() as work:
                report = await refresh.refresh_figures(work, lambda: datetime.now(UTC))
                await work.commit()
            print(
                f"full refresh {attempt}: {report.members} members, {report.removed} removed, "
                f"{report.duration.total_seconds():.1f} s",
                flush=True,
            )
        async with uow(read_only=True) as work:  # autocommit: VACUUM runs outside a transaction
            await (await driver_connection(work.session)).execute("VACUUM ANALYZE member_figures")

        counts: list[float] = []
        pages: list[float] = []
        for _ in range(20):
            for segment in (None, RfmSegment.LOYAL, RfmSegment.LOST):
                began = time.perf_counter()
                async with uow(read_only=True) as work:
                    await figures.standard_rfm(work, datetime.now(UTC), "", segment, "", 100)
                (counts if segment is None else pages).append(time.perf_counter() - began)
        print(f"GetRfm (standard, counts only): {_ms(counts)}", flush=True)
        print(f"GetRfm (standard, counts + a page of 100): {_ms(pages)}", flush=True)

        single: list[float] = []
        for i in range(200):
            began = time.perf_counter()
            async with uow() as work:
                await refresh.recompute(work, [member_id((i * 4999) % members)], datetime.now(UTC))
                await work.commit()
            single.append(time.perf_counter() - began)
        print(f"incremental recompute of one member (own transaction): {_ms(single)}", flush=True)
        await engine.dispose()
    finally:
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--postings", type=int, default=20_000_000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="insights-bench-") as scratch:
        asyncio.run(main(arguments.members, arguments.postings, Path(scratch)))
