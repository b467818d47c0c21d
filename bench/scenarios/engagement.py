"""The journeys' inactivity sweep at 1,000,000 members (`--members`, or `BENCH_SWEEP_MEMBERS`):
`bench/engagement_sweep.py`'s members loaded once per run into a database of the run's.

- `raw-engagement-sweep`: the sweep's INSERT ... SELECT on one plain asyncpg connection.
- `engagement-sweep`: `timer.sweep` as the service's timer runs it, against the two-minute
  goal (issue 19); both enter the same members (`extra.entered`).
"""

from __future__ import annotations

import os

from bench.context import BenchContext
from bench.engagement_sweep import GOAL_SECONDS, Prepared, prepare, raw, through_service
from bench.registry import Measurement, scenario


async def _prepared(ctx: BenchContext) -> Prepared:
    if "sweep" not in ctx.shared:
        members = ctx.members or int(os.environ.get("BENCH_SWEEP_MEMBERS", "1000000"))
        ctx.shared["sweep"] = await prepare(await ctx.database("engagement_sweep"), members)
    prepared: Prepared = ctx.shared["sweep"]
    return prepared


def _measurement(prepared: Prepared, seconds: float, entered: int, **extra: object) -> Measurement:
    return Measurement(
        count=prepared.members,
        seconds=seconds,
        concurrency=1,
        unit="members",
        extra={"entered": entered, "load_seconds": prepared.load_seconds, **extra},
    )


@scenario("raw-engagement-sweep")
async def raw_engagement_sweep(ctx: BenchContext) -> Measurement:
    """The inactivity sweep's statement on a plain connection."""
    prepared = await _prepared(ctx)
    seconds, entered = await raw(prepared)
    return _measurement(prepared, seconds, entered)


@scenario("engagement-sweep", ceiling="raw-engagement-sweep")
async def engagement_sweep(ctx: BenchContext) -> Measurement:
    """The inactivity sweep as the timer runs it (goal: 1,000,000 members in 2 minutes)."""
    prepared = await _prepared(ctx)
    seconds, entered = await through_service(prepared)
    return _measurement(
        prepared, seconds, entered, goal_seconds=GOAL_SECONDS, goal_met=seconds < GOAL_SECONDS
    )
