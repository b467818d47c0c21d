"""Trigger events to actions (issue 19): `bench/engagement_triggers.py` in the run's servers, at
`BENCH_TRIGGERS_RATE` (1,000) purchases a second for `BENCH_TRIGGERS_SECONDS` (30).

- `raw-engagement-triggers`: a bare JetStream pull consumer inserting one row per event with
  plain asyncpg, a transaction a fetched batch, at the same rate.
- `engagement-triggers`: the engagement service (three purchase journeys and the Explorer
  challenge, peers answering at once) from each publish to its three step runs and its
  challenge progress committed, against p99 under 2 s at 1,000 a second.
"""

from __future__ import annotations

import os
from typing import Any

from bench.context import BenchContext
from bench.engagement_triggers import GOAL_P99_MS, GOAL_RATE, raw, result, through_service
from bench.registry import Measurement, scenario


def _knobs() -> tuple[float, float]:
    rate = float(os.environ.get("BENCH_TRIGGERS_RATE", str(GOAL_RATE)))
    return rate, float(os.environ.get("BENCH_TRIGGERS_SECONDS", "30"))


def _measurement(found: dict[str, Any], **extra: Any) -> Measurement:
    return Measurement(
        count=found["handled"],
        seconds=found["seconds"],
        concurrency=1,
        unit="events",
        latencies_ms=found["latencies_ms"],
        extra={k: v for k, v in found.items() if k != "latencies_ms"} | extra,
    )


@scenario("raw-engagement-triggers")
async def raw_engagement_triggers(ctx: BenchContext) -> Measurement:
    """A bare JetStream consumer inserting a row per purchase event, a transaction a batch."""
    found = await raw(ctx.settings(), *_knobs())
    ctx.shared["raw-engagement-triggers"] = found
    return _measurement(found)


@scenario("engagement-triggers", ceiling="raw-engagement-triggers")
async def engagement_triggers(ctx: BenchContext) -> Measurement:
    """Purchases to journeys' actions and challenge progress (goal: 1,000/s, p99 under 2 s)."""
    found = await through_service(ctx.settings(), *_knobs())
    plain = ctx.shared.get("raw-engagement-triggers")
    judged = result(found, plain) if plain else {}
    return _measurement(
        found,
        goal_rate=GOAL_RATE,
        goal_p99_ms=GOAL_P99_MS,
        goal_met=judged.get("goal_met"),
        p99_vs_raw=judged.get("p99_vs_raw"),
    )
