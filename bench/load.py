"""Closed-loop load: N workers each calling `op` back to back, for a bounded time."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from bench.registry import Measurement

Op = Callable[[], Awaitable[object]]


async def _phase(op: Op, concurrency: int, duration: float, record: list[float] | None) -> float:
    clock = time.perf_counter
    started = clock()
    stop_at = started + duration

    async def worker() -> None:
        while clock() < stop_at:
            began = clock()
            await op()
            if record is not None:
                record.append((clock() - began) * 1000.0)

    async with asyncio.TaskGroup() as group:  # one failure cancels the rest
        for _ in range(concurrency):
            group.create_task(worker())
    return clock() - started


async def closed_loop(
    op: Op, *, concurrency: int, seconds: float, warmup: float, unit: str = "ops"
) -> Measurement:
    """Warm up for `warmup` s, then measure for `seconds` s with `concurrency` ops in flight.

    Operations started before the deadline are waited for and counted; the elapsed time
    includes them.
    """
    if warmup > 0:
        await _phase(op, concurrency, warmup, None)
    latencies: list[float] = []
    elapsed = await _phase(op, concurrency, seconds, latencies)
    return Measurement(
        count=len(latencies),
        seconds=elapsed,
        concurrency=concurrency,
        unit=unit,
        latencies_ms=latencies,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]
