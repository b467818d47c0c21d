"""What the insights scenarios share (`scenarios/insights*.py`): the facts they read, loaded
once per run (`insights_data.py`), timed runs, the service on those facts, and the minimal
hand-tuned SQL that is both the raw ceiling's and DuckDB's."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loyalty_insights.app import SPEC
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService, start_service

from bench import insights_data
from bench.context import BenchContext
from bench.insights_data import PERIOD, Loaded
from bench.load import percentile

CALL_TIMEOUT = 900.0
GROUP_TEAM = Caller(unit="group", client_id="bench-insights", scopes=frozenset({"insights:group"}))


def members(ctx: BenchContext) -> int:
    return ctx.members or int(os.environ.get("BENCH_INSIGHTS_MEMBERS", "1000000"))


def runs() -> int:
    return max(1, int(os.environ.get("BENCH_INSIGHTS_RUNS", "5")))


async def facts(ctx: BenchContext) -> Loaded:
    """The run's facts, loaded by the first scenario that asks (kept ones reused)."""
    if "insights" not in ctx.shared:
        ctx.shared["insights"] = await insights_data.load(ctx.settings(), members(ctx))
    loaded: Loaded = ctx.shared["insights"]
    return loaded


def facts_extra(loaded: Loaded) -> dict[str, Any]:
    return {
        "members": loaded.members,
        "seed": loaded.seed,
        "load_seconds": round(loaded.seconds, 1),
        "load_reused": loaded.reused,
        "rows": loaded.rows,
        "period": [PERIOD[0].isoformat(), PERIOD[1].isoformat()],
    }


def ms(values: list[float], q: float) -> float:
    return round(percentile(values, q), 1)


def bound(figure: Callable[[Any], Awaitable[object]], on: Any) -> Callable[[], Awaitable[object]]:
    async def once() -> object:
        return await figure(on)

    return once


async def timed(op: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    """One untimed call (caches warm), then `runs` timed ones, one after the other (ms)."""
    await op()
    found = []
    for _ in range(runs):
        began = time.perf_counter()
        await op()
        found.append((time.perf_counter() - began) * 1000.0)
    return found


def summary(latencies: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        name: {"p50_ms": ms(values, 50), "p95_ms": ms(values, 95), "runs": len(values)}
        for name, values in latencies.items()
    }


async def start_insights(ctx: BenchContext, loaded: Loaded) -> RunningService[Any]:
    """The insights service on the loaded facts (its database `<prefix>insights`)."""
    service = await start_service(SPEC, ctx.settings(database_prefix=loaded.prefix), port=0)
    await service.wait_until_serving()
    return service


MINIMAL_RFM = """
WITH bought AS (
    SELECT member_id, count(*) AS frequency, sum(spend) AS monetary, max(occurred_at) AS last_at
    FROM activity
    WHERE occurred_at >= $1 AND occurred_at < $2 AND kind = 'purchase'
    GROUP BY member_id
), scored AS (
    SELECT ntile(5) OVER (ORDER BY last_at) AS r, ntile(5) OVER (ORDER BY frequency) AS f,
           ntile(5) OVER (ORDER BY monetary) AS m
    FROM bought
)
SELECT r, f, m, count(*) AS members FROM scored GROUP BY r, f, m
"""

# Outstanding points by issuing unit and expiry month, and the period's issued and redeemed,
# in one pass over the lot movements.
MINIMAL_LIABILITY = """
SELECT earned_unit, date_trunc('month', expires_at) AS expiry,
       sum(points) AS outstanding,
       sum(points) FILTER (WHERE kind = 'earn' AND posted_at >= $1) AS issued,
       sum(points) FILTER (WHERE kind = 'redeem' AND posted_at >= $1) AS redeemed,
       sum(points) FILTER (WHERE kind = 'expire' AND posted_at >= $1) AS expired
FROM lot_movements WHERE posted_at < $2
GROUP BY 1, 2
"""

MINIMAL_OVERLAP = """
WITH visited AS (
    SELECT DISTINCT member_id, unit FROM activity
    WHERE occurred_at >= $1 AND occurred_at < $2
      AND kind IN ('purchase', 'redemption', 'consumption', 'coupon', 'order')
)
SELECT a.unit, b.unit AS other_unit, count(*) AS members
FROM visited a JOIN visited b ON a.member_id = b.member_id
GROUP BY 1, 2
"""

MINIMAL = {"rfm": MINIMAL_RFM, "liability": MINIMAL_LIABILITY, "overlap": MINIMAL_OVERLAP}
