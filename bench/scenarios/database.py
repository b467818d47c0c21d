"""PostgreSQL ceilings."""

from __future__ import annotations

import asyncpg
from loyalty_kit.db import asyncpg_params

from bench.context import BenchContext
from bench.registry import Measurement, scenario

SCRATCH_DDL = """
CREATE TABLE IF NOT EXISTS bench_commit (
    id         bigserial PRIMARY KEY,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


@scenario("raw-asyncpg-commit")
async def raw_asyncpg_commit(ctx: BenchContext) -> Measurement:
    """Ceiling: plain asyncpg pool, one small INSERT per transaction, each commit durable.

    The pool has as many connections as a kit service's engine may open (pool_size plus
    max_overflow), so service scenarios that write compare like with like.
    """
    url = await ctx.database("raw")
    size = 2 * ctx.settings().database_pool_size
    pool = await asyncpg.create_pool(**asyncpg_params(url), min_size=size, max_size=size)
    try:
        await pool.execute(SCRATCH_DDL)
        settings = {
            name: await pool.fetchval(f"SHOW {name}")
            for name in ("synchronous_commit", "fsync", "wal_sync_method")
        }

        async def commit_one() -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO bench_commit (payload) VALUES ($1)", "earned 10")

        measured = await ctx.closed_loop(commit_one, unit="commits")
        measured.extra.update(pool_size=size, **settings)
        return measured
    finally:
        await pool.close()
