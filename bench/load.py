"""Load: closed loop (N workers each calling `op` back to back, for a bounded time) and open
loop (operations started at a steady rate, whatever the earlier ones are doing)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

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


@dataclass
class OpenLoop:
    """How an open-loop phase went: its length, and whether the load kept to the schedule."""

    seconds: float  # from the first start to the last operation's end
    peak_in_flight: int  # most operations started and not finished at once
    max_lag_ms: float  # how late the latest start was against its schedule (the event loop)


async def open_loop(op: Callable[[int], Awaitable[object]], *, rate: float, count: int) -> OpenLoop:
    """Start `op(0)` .. `op(count - 1)` at a steady `rate` per second, op i at i / rate s,
    whether or not the earlier ones have finished (open loop: a slow system meets the same
    arrivals, so queueing shows in latency); then wait for every one. A failure cancels the rest.
    """
    clock = time.perf_counter
    started = clock()
    in_flight = peak = 0
    lag = 0.0

    async def one(i: int) -> None:
        nonlocal in_flight
        try:
            await op(i)
        finally:
            in_flight -= 1

    async with asyncio.TaskGroup() as group:
        for i in range(count):
            delay = started + i / rate - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            in_flight += 1
            peak = max(peak, in_flight)
            group.create_task(one(i))
    return OpenLoop(seconds=clock() - started, peak_in_flight=peak, max_lag_ms=lag * 1000.0)


def latency_p99s(measured: Measurement) -> tuple[float, float]:
    """A latency scenario's p99s (closed loop, steady load): what a ceiling keeps for
    `beside_ceiling`."""
    return percentile(measured.latencies_ms or [0.0], 99), measured.extra["steady_p99_ms"]


def beside_ceiling(measured: Measurement, ceiling: tuple[float, float] | None) -> None:
    """A latency scenario's p99s against its raw ceiling's (closed loop, steady load) of the
    same run, where the ceiling ran: `p99_vs_ceiling`, `steady_p99_vs_ceiling`."""
    if not ceiling or not ceiling[0] or not ceiling[1]:
        return
    closed_p99 = percentile(measured.latencies_ms or [0.0], 99)
    measured.extra["p99_vs_ceiling"] = round(closed_p99 / ceiling[0], 2)
    measured.extra["steady_p99_vs_ceiling"] = round(measured.extra["steady_p99_ms"] / ceiling[1], 2)


async def latency_phases(
    once: Op,
    *,
    unit: str,
    concurrency: int,
    seconds: float,
    warmup: float,
    rate: float,
    goal_p99_ms: float,
) -> Measurement:
    """A latency scenario's three phases: one call at a time for a second (the latency without
    queueing: a shared machine's load shows), the closed loop (throughput, its ratio), then a
    steady open-loop load of `rate` a second for `seconds` whose p99 is held to the goal."""
    unloaded = await closed_loop(once, concurrency=1, seconds=1.0, warmup=0.2, unit=unit)
    measured = await closed_loop(
        once, concurrency=concurrency, seconds=seconds, warmup=warmup, unit=unit
    )
    steady: list[float] = []

    async def timed(_: int) -> None:
        began = time.perf_counter()
        await once()
        steady.append((time.perf_counter() - began) * 1000.0)

    phase = await open_loop(timed, rate=rate, count=max(1, int(rate * seconds)))
    p99 = percentile(steady, 99)
    measured.extra.update(
        steady_rate=rate,
        steady_p50_ms=round(percentile(steady, 50), 3),
        steady_p99_ms=round(p99, 3),
        unloaded_p50_ms=round(percentile(unloaded.latencies_ms or [0.0], 50), 3),
        unloaded_p99_ms=round(percentile(unloaded.latencies_ms or [0.0], 99), 3),
        steady_max_lag_ms=round(phase.max_lag_ms, 1),
        goal_p99_ms=goal_p99_ms,
        goal_met=p99 < goal_p99_ms,
        load_average_1m=round(os.getloadavg()[0], 2),
    )
    return measured
