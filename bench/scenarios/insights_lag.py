"""Event-to-figure lag of the insights service: points' events published to JetStream at a
steady rate, each timed until its fact is in the facts tables (see `insights.py` for the facts
every insights scenario reads)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from google.protobuf.message import Message
from loyalty.common.v1 import money_pb2
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.points.v1 import points_service_pb2
from loyalty_kit import events
from loyalty_kit.db import asyncpg_params
from loyalty_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MSG_ID_HEADER
from loyalty_kit.timestamps import timestamp

from bench import insights_data
from bench.context import BenchContext
from bench.insights import facts, facts_extra, ms, start_insights
from bench.load import percentile
from bench.registry import Measurement, scenario

LAG_GOAL_MS = 2000.0  # event to figure, p99, at 500 events/s
POLL_SECONDS = 0.02
LAG_DRAIN_SECONDS = 30.0  # after the last publish, at most this long for the last facts


def _lag_event(number: int, member_id: str, at: datetime) -> Message:
    """Even numbers a purchase (PointsEarned -> activity), odd ones a posting (LedgerPosted ->
    ledger_postings and lot_movements), each of a member of its own."""
    posting_id = str(uuid.uuid4())
    if number % 2 == 0:
        return points_events.PointsEarned(
            member_id=member_id,
            posting_id=posting_id,
            unit="mall",
            order_id=f"lag-{number}",
            qualifying_spend_base=money_pb2.Money(currency_code="CNY", amount="100.00"),
            points=100,
            occurred_at=timestamp(at),
        )
    return points_events.LedgerPosted(
        member_id=member_id,
        postings=[
            points_events.LedgerPosting(
                posting_id=posting_id,
                kind=points_service_pb2.POSTING_KIND_EARN,
                unit="mall",
                points=100,
                posted_at=timestamp(at),
                occurred_at=timestamp(at),
            )
        ],
        movements=[
            points_events.LotMovement(
                posting_id=posting_id,
                lot_id=posting_id,
                earned_unit="mall",
                unit="mall",
                points=100,
                posted_at=timestamp(at),
            )
        ],
    )


FACT_OF = {
    points_events.PointsEarned: "SELECT member_id FROM activity WHERE member_id = ANY($1::text[])",
    points_events.LedgerPosted: (
        "SELECT member_id FROM ledger_postings WHERE member_id = ANY($1::text[])"
    ),
}


class LagWatch:
    """Each published event's publish time until its fact is found (a poll every 20 ms)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.pending: dict[type[Message], dict[str, float]] = {kind: {} for kind in FACT_OF}
        self.lags_ms: list[float] = []

    def published(self, event: Message, member_id: str, at: float) -> None:
        self.pending[type(event)][member_id] = at

    def waiting(self) -> int:
        return sum(len(p) for p in self.pending.values())

    async def poll(self) -> None:
        for kind, pending in self.pending.items():
            if not pending:
                continue
            rows = await self.conn.fetch(FACT_OF[kind], list(pending))
            seen = time.perf_counter()
            for row in rows:
                sent = pending.pop(row["member_id"], None)
                if sent is not None:
                    self.lags_ms.append((seen - sent) * 1000.0)


async def _forget(conn: asyncpg.Connection, member_ids: list[str]) -> None:
    """The benchmark's own facts out of the loaded database again."""
    for table in ("activity", "ledger_postings", "lot_movements"):
        await conn.execute(f"DELETE FROM {table} WHERE member_id = ANY($1::text[])", member_ids)


@scenario("insights-lag")
async def insights_lag(ctx: BenchContext) -> Measurement:
    """PointsEarned and LedgerPosted published to JetStream at `BENCH_INSIGHTS_RATE` (500) a
    second for `BENCH_INSIGHTS_LAG_SECONDS` (30), open loop, to the insights service running
    on the loaded facts: per event, publish -> its fact in the facts tables (p50/p99 against
    the 2 s goal). Throughput: events a second that became facts."""
    loaded = await facts(ctx)
    rate = float(os.environ.get("BENCH_INSIGHTS_RATE", "500"))
    seconds = float(os.environ.get("BENCH_INSIGHTS_LAG_SECONDS", "30"))
    total = int(rate * seconds)
    settings = ctx.settings(database_prefix=loaded.prefix)
    service = await start_insights(ctx, loaded)
    client = await events.connect(ctx.infra.nats_url, "loyalty-bench-insights-lag")
    conn = await asyncpg.connect(**asyncpg_params(loaded.url))
    member_ids = [str(uuid.uuid4()) for _ in range(total)]
    try:
        js = client.jetstream(publish_async_max_pending=4000)
        await events.ensure_stream(js, settings.event_namespace, "points")
        await _consuming(js, settings.event_namespace, conn)
        watch = LagWatch(conn)
        started = time.perf_counter()
        publishing = asyncio.create_task(
            _publish_lag(js, settings.event_namespace, member_ids, rate, watch)
        )
        while not publishing.done() or watch.waiting():
            await asyncio.sleep(POLL_SECONDS)
            await watch.poll()
            if publishing.done() and time.perf_counter() - started > seconds + LAG_DRAIN_SECONDS:
                break
        publish_seconds = await publishing
        elapsed = time.perf_counter() - started
        missing = watch.waiting()
    finally:
        await client.close()
        await service.stop(grace=0.5)  # first: no fact of an event still in the stream after
        try:
            await _forget(conn, member_ids)
        finally:
            await conn.close()
    lags = watch.lags_ms
    return Measurement(
        count=len(lags),
        seconds=elapsed,
        concurrency=1,
        unit="events",
        latencies_ms=lags,
        extra={
            **facts_extra(loaded),
            "rate": rate,
            "published": total,
            "publish_seconds": round(publish_seconds, 2),
            "missing": missing,
            "goal_p99_ms": LAG_GOAL_MS,
            "p50_ms": ms(lags, 50) if lags else None,
            "p99_ms": ms(lags, 99) if lags else None,
            "max_ms": round(max(lags), 1) if lags else None,
            # Facts a second while the service kept up or not: its sustained rate when it fell
            # behind (then `missing` events had no fact when the scenario stopped waiting, and
            # the true p99 is longer than the run).
            "facts_per_s": round(len(lags) / elapsed, 1),
            "meets_goal": bool(lags) and not missing and percentile(lags, 99) <= LAG_GOAL_MS,
        },
    )


async def _consuming(js: Any, namespace: str, conn: asyncpg.Connection) -> None:
    """One untimed event through, so the service's consumer is subscribed and warm."""
    member_id = str(uuid.uuid4())
    watch = LagWatch(conn)
    await _publish_lag(js, namespace, [member_id], 1.0, watch)
    deadline = time.perf_counter() + LAG_DRAIN_SECONDS
    while watch.waiting():
        if time.perf_counter() > deadline:
            raise AssertionError(f"no fact of the first event after {LAG_DRAIN_SECONDS:.0f}s")
        await asyncio.sleep(POLL_SECONDS)
        await watch.poll()
    await _forget(conn, [member_id])


async def _publish_lag(
    js: Any, namespace: str, member_ids: list[str], rate: float, watch: LagWatch
) -> float:
    """Event n published at start + n / rate (acks awaited at the end); seconds it took."""
    started = time.perf_counter()
    acks = []
    for number, member_id in enumerate(member_ids):
        delay = started + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event = _lag_event(number, member_id, insights_data.NOW)
        event_id = str(uuid.uuid4())
        headers = {
            MSG_ID_HEADER: event_id,
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event.DESCRIPTOR.full_name,
        }
        watch.published(event, member_id, time.perf_counter())
        acks.append(
            await js.publish_async(
                events.event_subject(event, namespace),
                event.SerializeToString(deterministic=True),
                headers=headers,
            )
        )
    await asyncio.gather(*acks)
    return time.perf_counter() - started
