"""Insights' minimal RFM, liability and overlap queries in an in-process DuckDB against
PostgreSQL, over the same facts (see `insights.py` for the facts every insights scenario reads).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from loyalty_kit.db import asyncpg_params

from bench.context import BenchContext
from bench.insights import MINIMAL, facts, facts_extra, ms, runs, timed
from bench.insights_data import PERIOD
from bench.registry import Measurement, scenario

# What the three queries read, exported column for column.
EXPORTS = {
    "activity": "SELECT member_id, kind, unit, occurred_at, spend FROM activity",
    "lot_movements": ("SELECT earned_unit, kind, points, posted_at, expires_at FROM lot_movements"),
}


async def _export(url: Any, folder: Path) -> dict[str, Path]:
    """Each table as CSV (`COPY ... TO STDOUT`), then as Parquet through DuckDB."""
    import duckdb

    conn = await asyncpg.connect(**asyncpg_params(url))
    found: dict[str, Path] = {}
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        for table, query in EXPORTS.items():
            csv = folder / f"{table}.csv"
            await conn.copy_from_query(query, output=str(csv), format="csv", header=True)
            parquet = folder / f"{table}.parquet"
            with duckdb.connect() as duck:
                duck.execute(
                    f"COPY (SELECT * FROM read_csv('{csv}', header = true)) "
                    f"TO '{parquet}' (FORMAT parquet)"
                )
            csv.unlink()
            found[table] = parquet
    finally:
        await conn.close()
    return found


@scenario("insights-duckdb")
async def insights_duckdb(ctx: BenchContext) -> Measurement:
    """The minimal RFM, liability and overlap queries in an in-process DuckDB over the same
    facts (exported to Parquet, then loaded into DuckDB's own tables), against PostgreSQL.

    `BENCH_INSIGHTS_RUNS` (5) timed runs of each in each engine after one untimed;
    `extra.queries` has both engines' p50 and PostgreSQL / DuckDB. Export and load times are
    in `extra`, outside what is measured.
    """
    import duckdb

    loaded = await facts(ctx)
    start, end = PERIOD
    with tempfile.TemporaryDirectory(prefix="insights-duckdb-") as folder:
        began = time.perf_counter()
        parquet = await _export(loaded.url, Path(folder))
        export_seconds = time.perf_counter() - began
        duck = duckdb.connect()
        try:
            duck.execute("SET TimeZone = 'UTC'")
            began = time.perf_counter()
            for table, path in parquet.items():
                duck.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{path}')")
            duck_load_seconds = time.perf_counter() - began
            parquet_mb = sum(p.stat().st_size for p in parquet.values()) / 1e6

            def duck_query(sql: str) -> Callable[[], Awaitable[object]]:
                async def once() -> object:
                    return duck.execute(
                        sql, [start, end]
                    )  # the same text: DuckDB takes $n too.fetchall()

                return once

            duck_ms = {name: await timed(duck_query(sql), runs()) for name, sql in MINIMAL.items()}
            threads = duck.execute("SELECT current_setting('threads')").fetchone()
        finally:
            duck.close()
    conn = await asyncpg.connect(**asyncpg_params(loaded.url))
    try:

        def pg_query(sql: str) -> Callable[[], Awaitable[object]]:
            async def once() -> object:
                return await conn.fetch(sql, start, end)

            return once

        pg_ms = {name: await timed(pg_query(sql), runs()) for name, sql in MINIMAL.items()}
        workers = await conn.fetchval("SHOW max_parallel_workers_per_gather")
    finally:
        await conn.close()
    queries = {
        name: {
            "duckdb_p50_ms": ms(duck_ms[name], 50),
            "postgres_p50_ms": ms(pg_ms[name], 50),
            "postgres_over_duckdb": round(
                statistics.median(pg_ms[name]) / max(statistics.median(duck_ms[name]), 1e-6), 2
            ),
        }
        for name in MINIMAL
    }
    every = [v for values in duck_ms.values() for v in values]
    return Measurement(
        count=len(every),
        seconds=sum(every) / 1000.0,
        concurrency=1,
        unit="queries",
        latencies_ms=every,
        extra={
            **facts_extra(loaded),
            "queries": queries,
            "export_seconds": round(export_seconds, 1),
            "duckdb_load_seconds": round(duck_load_seconds, 1),
            "parquet_mb": round(parquet_mb, 1),
            "duckdb_threads": threads[0] if threads else None,
            "postgres_parallel_workers_per_gather": workers,
        },
    )
