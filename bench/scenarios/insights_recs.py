"""Personalised offers at 100,000 members (`--members`, or `BENCH_RECS_MEMBERS`): the planted
history of `bench/insights_recs.py` loaded once per run into a database of the run's and the
offers' tables rebuilt, then `BENCH_RECS_REQUESTS` (2,000) recommendations for random members.

- `raw-insights-recs`: the request's statements on one plain asyncpg connection.
- `insights-recs`: the use case in its read-only unit of work (what the servicer runs, without
  gRPC), against the 50 ms p99 goal (issue 19); `extra` has the offline evaluation's
  precision@5 against the popularity baseline.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from bench.context import BenchContext
from bench.insights_recs import Prepared, evaluation, percentiles, prepare, raw, through_service
from bench.registry import Measurement, scenario

GOAL_P99_MS = 50.0


def _requests() -> int:
    return int(os.environ.get("BENCH_RECS_REQUESTS", "2000"))


async def _prepared(ctx: BenchContext) -> Prepared:
    if "recs" not in ctx.shared:
        members = ctx.members or int(os.environ.get("BENCH_RECS_MEMBERS", "100000"))
        ctx.shared["recs"] = await prepare(await ctx.database("insights_recs"), members)
    prepared: Prepared = ctx.shared["recs"]
    return prepared


def _measurement(prepared: Prepared, samples: list[float], **extra: object) -> Measurement:
    return Measurement(
        count=len(samples),
        seconds=sum(samples),
        concurrency=1,
        unit="requests",
        latencies_ms=[s * 1000 for s in samples],
        extra={
            "members": len(prepared.members),
            "uses": prepared.uses,
            "load_seconds": prepared.load_seconds,
            "rebuild_seconds": prepared.rebuild_seconds,
            "rebuilt": prepared.rebuilt,
            **percentiles(samples),
            **extra,
        },
    )


@scenario("raw-insights-recs")
async def raw_insights_recs(ctx: BenchContext) -> Measurement:
    """A member's recommendations: the request's statements on a plain connection."""
    prepared = await _prepared(ctx)
    return _measurement(prepared, await raw(prepared, _requests()))


@scenario("insights-recs", ceiling="raw-insights-recs")
async def insights_recs(ctx: BenchContext) -> Measurement:
    """A member's recommendations through the use case (p99 goal 50 ms), and the offline
    evaluation's precision@5 against popularity."""
    prepared = await _prepared(ctx)
    samples = await through_service(prepared, _requests())
    found = percentiles(samples)
    return _measurement(
        prepared,
        samples,
        goal_p99_ms=GOAL_P99_MS,
        goal_met=found["p99_ms"] < GOAL_P99_MS,
        evaluation=evaluation(20_000, datetime.now(UTC)),
    )
