"""Measure the members' figures at scale (not part of `make bench`'s scenarios yet): a scratch
embedded PostgreSQL, the insights migrations, `bench.insights_data.load_facts`, then a full
refresh, incremental refreshes as time moves on (each checked against a refresh from the facts
as of the same moment, unless `--no-compare`), the standard GetRfm reads (counts; a page of a
segment), and incremental recomputes.

    .venv/bin/python -m bench.insights_refresh --members 1000000 --postings 20000000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loyalty_devstack.embedded import EmbeddedPostgres
from loyalty_insights.adapters.member_figures import COLUMNS
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


def _at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


async def _fingerprint(uow: Callable[..., InsightsUnitOfWork]) -> tuple[str, ...]:
    """A digest of every row's figures and of the stored counts."""
    columns = ", ".join(c for c in COLUMNS if c != "window_end")
    async with uow(read_only=True) as work:
        conn = await driver_connection(work.session)
        return tuple(
            [
                await conn.fetchval(
                    f"SELECT md5(string_agg(row({columns})::text, '|' ORDER BY member_id)) "
                    "FROM member_figures"
                )
            ]
            + [
                await conn.fetchval(
                    f"SELECT md5(string_agg(row(k.*)::text, '|' ORDER BY k)) FROM ({q}) AS k"
                )
                for q in (
                    "SELECT figure, key, sum(members) FROM figure_counts GROUP BY 1, 2 "
                    "HAVING sum(members) <> 0",
                    "SELECT unit, sum(spend), sum(members) FROM spend_counts GROUP BY 1 "
                    "HAVING sum(spend) <> 0 OR sum(members) <> 0",
                    "SELECT from_unit, to_unit, sum(members) FROM flow_counts GROUP BY 1, 2 "
                    "HAVING sum(members) <> 0",
                )
            ]
        )


async def main(members: int, postings: int, data_dir: Path, compare: bool = True) -> None:
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
        for attempt in (1, 2) if compare else (1,):
            async with uow() as work:
                report = await refresh.refresh_figures(work, lambda: datetime.now(UTC), full=True)
                await work.commit()
            print(
                f"full refresh {attempt}: {report.members} members, {report.removed} removed, "
                f"{report.duration.total_seconds():.1f} s",
                flush=True,
            )
        # Incremental refreshes as time moves on (the schedule's 6 hours; a day: every buyer's
        # recency moves), each checked against a refresh from the facts as of the same moment.
        steps_ahead = (
            ("same day", timedelta(0)),
            ("6 hours on", timedelta(hours=6)),
            ("1 day on", timedelta(days=1)),
            ("3 days on", timedelta(days=3)),
        )
        for label, ahead in steps_ahead:
            moment = datetime.now(UTC) + ahead
            async with uow() as work:
                report = await refresh.refresh_figures(work, _at(moment))
                await work.commit()
            if not compare:
                print(
                    f"incremental refresh ({label}): full={report.full}, {report.written} rows "
                    f"written, {report.duration.total_seconds():.1f} s",
                    flush=True,
                )
                continue
            incremental = await _fingerprint(uow)
            async with uow() as work:
                full = await refresh.refresh_figures(work, _at(moment), full=True)
                await work.commit()
            same = incremental == await _fingerprint(uow)
            print(
                f"incremental refresh ({label}): full={report.full}, {report.written} rows "
                f"written, {report.duration.total_seconds():.1f} s (from the facts: "
                f"{full.duration.total_seconds():.1f} s); equal to the full one: {same}",
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
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the refresh from the facts after each incremental one (and its check)",
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="insights-bench-") as scratch:
        asyncio.run(
            main(arguments.members, arguments.postings, Path(scratch), not arguments.no_compare)
        )
