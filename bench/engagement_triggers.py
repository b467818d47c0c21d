"""Trigger events to actions (issue 19: 1,000 trigger events a second, p99 from event to action
under 2 s, journeys and challenge progress together).

The engagement service (`start_service`, its consumers, timer and webhook loop running) with
three purchase-triggered journeys (a coupon, bonus points, a cross-unit coupon capped once a
month) and the cross-unit "Explorer" challenge (a purchase at the mall, the hotel and the cinema
in a quarter). Its peers (points and benefits) are an in-process stand-in answering at once, as
in `engagement_leaderboard.py`: what is measured is the engagement service's own path. Points'
`PointsEarned` events, each of a member of its own, are published to JetStream at `--rate` a
second for `--seconds` (open loop, each timed from its publish); an event is done when its
three journeys' step runs and its challenge progress row are committed (polled every 50 ms).

The raw ceiling, in the same run at the same rate: a bare nats-py pull consumer on the same
stream (fetch 100, as the kit's consumers) inserting one row per event into PostgreSQL with
plain asyncpg, a transaction per fetched batch, and the same watch.

One JSON object on stdout (and `--out`):

    .venv/bin/python -m bench.engagement_triggers --rate 1000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats
from loyalty.common.v1 import money_pb2
from loyalty.points.v1 import events_pb2 as points_events
from loyalty_devstack.embedded import Infrastructure
from loyalty_engagement.app import SPEC as ENGAGEMENT
from loyalty_engagement.bootstrap import Engagement, bootstrap
from loyalty_engagement.domain import journeys as journey_domain
from loyalty_engagement.domain.challenges import (
    ChallengeSpec,
    Goal,
    GoalKind,
    Reward,
    Window,
    WindowKind,
)
from loyalty_engagement.domain.journeys import (
    AwardPoints,
    FrequencyCap,
    IssueCoupon,
    JourneySpec,
    JourneyState,
    Trigger,
    TriggerKind,
)
from loyalty_engagement.service_layer import challenges, journeys
from loyalty_kit import events
from loyalty_kit.db import asyncpg_params
from loyalty_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MSG_ID_HEADER
from loyalty_kit.server import ServiceContext, ServiceSpec, start_service
from loyalty_kit.settings import Settings
from loyalty_kit.timestamps import timestamp
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError

from bench.context import BenchContext
from bench.engagement_leaderboard import AnsweringActions
from bench.load import percentile
from bench.standalone import emit

GOAL_P99_MS = 2000.0
GOAL_RATE = 1000.0
POLL_SECONDS = 0.05
WINDOW = 500  # pending events looked for at a poll (the oldest)
DRAIN_SECONDS = 60.0  # after the last publish, at most this long for the last events
WARMUP_EVENTS = 3000  # at most (no more than the measured run's own)
UNITS = ("mall", "hotel", "cinema")
JOURNEYS = (
    JourneySpec(
        display_name="purchase -> mall coupon (bench)",
        unit="mall",
        trigger=Trigger(TriggerKind.PURCHASE),
        steps=(IssueCoupon("mall-voucher-10", "mall"),),
    ),
    JourneySpec(
        display_name="purchase -> bonus points (bench)",
        unit="group",
        trigger=Trigger(TriggerKind.PURCHASE),
        steps=(AwardPoints(50, "group"),),
    ),
    JourneySpec(
        display_name="purchase -> cinema coupon, once a month (bench)",
        unit="cinema",
        trigger=Trigger(TriggerKind.PURCHASE),
        steps=(IssueCoupon("cinema-ticket", "cinema"),),
        frequency_cap=FrequencyCap(max_entries=1, period_days=30),
    ),
)
EXPLORER = ChallengeSpec(
    display_name="Explorer (bench)",
    unit="group",
    goal=Goal(GoalKind.DISTINCT_UNITS, 3, units=UNITS),
    window=Window(WindowKind.QUARTER),
    reward=Reward(points=1000, funding_unit="group", badge="explorer"),
    repeatable=False,
    time_zone="Asia/Shanghai",
    start_at=None,
    end_at=None,
)
RAW_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_trigger_rows"
    " (event_id text PRIMARY KEY, member_id text NOT NULL, seen_at timestamptz NOT NULL)"
)


def _answering(context: ServiceContext) -> Engagement:
    """The service's root with points and benefits stood in for (answering at once)."""
    return dataclasses.replace(bootstrap(context), actions=AnsweringActions())


SERVICE: ServiceSpec[Engagement, []] = dataclasses.replace(ENGAGEMENT, bootstrap=_answering)  # type: ignore[arg-type]


@dataclasses.dataclass
class Sent:
    member_id: str
    at: float  # perf_counter at publish
    keys: tuple[str, ...]  # what is looked for: the step runs' entry ids (or the event id)


class Watch:
    """Each published event until what it causes is committed; lags in ms."""

    def __init__(self, done: Callable[[list[Sent]], Awaitable[set[str]]]) -> None:
        self.done = done
        self.pending: dict[str, Sent] = {}
        self.lags_ms: list[float] = []

    def published(self, sent: Sent) -> None:
        self.pending[sent.member_id] = sent

    async def poll(self) -> None:
        if not self.pending:
            return
        # The oldest first, at most WINDOW of them: events are handled in about the order
        # they were published, and a poll of a whole backlog would load the machine measured.
        found = await self.done(list(itertools.islice(self.pending.values(), WINDOW)))
        seen = time.perf_counter()
        for member_id in found:
            sent = self.pending.pop(member_id, None)
            if sent is not None:
                self.lags_ms.append((seen - sent.at) * 1000.0)


def _event(member_id: str, number: int, at: datetime) -> tuple[points_events.PointsEarned, str]:
    posting_id = str(uuid.uuid4())
    return (
        points_events.PointsEarned(
            member_id=member_id,
            posting_id=posting_id,
            unit=UNITS[number % len(UNITS)],
            order_id=f"bench-{number}",
            qualifying_spend_base=money_pb2.Money(currency_code="CNY", amount="100.00"),
            points=100,
            occurred_at=timestamp(at),
        ),
        posting_id,
    )


async def _publish(
    js: Any,
    namespace: str,
    count: int,
    rate: float,
    watch: Watch,
    keys_of: Callable[[str, str, str], tuple[str, ...]],
) -> float:
    """Event n published at start + n / rate, each of a new member; seconds it took."""
    started = time.perf_counter()
    acks = []
    for number in range(count):
        delay = started + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        member_id = str(uuid.uuid4())
        event, posting_id = _event(member_id, number, datetime.now(UTC))
        event_id = str(uuid.uuid4())
        headers = {
            MSG_ID_HEADER: event_id,
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event.DESCRIPTOR.full_name,
        }
        watch.published(
            Sent(member_id, time.perf_counter(), keys_of(member_id, posting_id, event_id))
        )
        acks.append(
            await js.publish_async(
                events.event_subject(event, namespace),
                event.SerializeToString(deterministic=True),
                headers=headers,
            )
        )
        if len(acks) >= 2000:
            await asyncio.gather(*acks)
            acks = []
    await asyncio.gather(*acks)
    return time.perf_counter() - started


async def _drive(
    js: Any,
    namespace: str,
    rate: float,
    seconds: float,
    watch: Watch,
    keys_of: Any,
    analyze: Callable[[], Awaitable[object]],
) -> dict[str, Any]:
    """Warm-up events through first (a history in the tables, then analyzed as autovacuum
    would have analyzed a live database's: a plan made over empty tables is not what a
    running service uses), then the measured events; what was found."""
    await _publish(js, namespace, 1, 1.0, watch, keys_of)
    await _drained(watch)
    count = max(1, round(rate * seconds))
    await _publish(js, namespace, min(WARMUP_EVENTS, count), rate, watch, keys_of)
    await _drained(watch)
    await analyze()
    watch.lags_ms.clear()
    started = time.perf_counter()
    publishing = asyncio.create_task(_publish(js, namespace, count, rate, watch, keys_of))
    backlog_at_end: int | None = None
    while True:
        await asyncio.sleep(POLL_SECONDS)
        await watch.poll()
        if publishing.done():
            if backlog_at_end is None:
                backlog_at_end = len(watch.pending)
            if not watch.pending or time.perf_counter() - started > seconds + DRAIN_SECONDS:
                break
    publish_seconds = await publishing
    elapsed = time.perf_counter() - started
    lags = watch.lags_ms
    missing = len(watch.pending)
    return {
        "rate": rate,
        "published": count,
        "handled": len(lags),
        "publish_seconds": round(publish_seconds, 2),
        "seconds": round(elapsed, 2),
        # Events a second from the first publish to the last one done (drain included).
        "throughput": round(len(lags) / elapsed, 1),
        "backlog_at_end_of_publishing": backlog_at_end,
        "missing": missing,
        "p50_ms": _ms(lags, 50),
        "p95_ms": _ms(lags, 95),
        "p99_ms": _ms(lags, 99),
        "max_ms": round(max(lags), 1) if lags else None,
        "latencies_ms": lags,
    }


def _analyze(db: asyncpg.Connection) -> Callable[[], Awaitable[object]]:
    return lambda: db.execute("ANALYZE")


async def _writes(db: asyncpg.Connection) -> dict[str, int]:
    """Rows inserted, updated and deleted so far in each table of the service's database (and
    its transactions committed, as `(commits)`), as PostgreSQL's statistics count them: each
    backend flushes its counts about once a second, so a short run's figures fall short."""
    await asyncio.sleep(1.0)  # the statistics are flushed about once a second
    await db.execute("SELECT pg_stat_clear_snapshot()")
    rows = await db.fetch(
        "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS n FROM pg_stat_user_tables"
    )
    found = {r["relname"]: int(r["n"]) for r in rows}
    found["(commits)"] = int(
        await db.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
    )
    return found


async def _drained(watch: Watch) -> None:
    deadline = time.perf_counter() + DRAIN_SECONDS
    while watch.pending:
        if time.perf_counter() > deadline:
            raise AssertionError(f"warm-up events not handled in {DRAIN_SECONDS:.0f}s")
        await asyncio.sleep(POLL_SECONDS)
        await watch.poll()


def _ms(lags: list[float], q: float) -> float | None:
    return round(percentile(lags, q), 1) if lags else None


async def through_service(settings: Settings, rate: float, seconds: float) -> dict[str, Any]:
    """The engagement service handling `rate` purchases a second for `seconds`."""
    service = await start_service(SERVICE, settings, port=0)
    client = await nats.connect(settings.nats_url)
    conn: asyncpg.Connection | None = None
    try:
        await service.wait_until_serving()
        root: Engagement = service.root
        now = datetime.now(UTC)
        journey_ids: list[tuple[str, int]] = []
        async with root.uow() as uow:
            for spec in JOURNEYS:
                stored = await journeys.create(uow, spec, JourneyState.ACTIVE, now)
                journey_ids.append((stored.journey_id, stored.version))
            challenge = await challenges.create(uow, EXPLORER, now)
            await uow.commit()
        conn = await asyncpg.connect(**asyncpg_params(settings.service_database_url("engagement")))
        js = client.jetstream()
        await events.ensure_stream(js, settings.event_namespace, "points")

        def keys_of(member_id: str, posting_id: str, _event_id: str) -> tuple[str, ...]:
            key = f"purchase:{posting_id}"
            return tuple(
                journey_domain.entry_id(jid, version, member_id, key)
                for jid, version in journey_ids
            )

        assert conn is not None
        db = conn

        async def done(sent: list[Sent]) -> set[str]:
            """Members whose three step runs and challenge progress are committed."""
            entries = [k for s in sent for k in s.keys]
            ran = {
                r[0]
                for r in await db.fetch(
                    "SELECT k FROM unnest($1::text[]) AS k"
                    " WHERE EXISTS (SELECT FROM step_runs WHERE entry_id = k)",
                    entries,
                )
            }
            progressed = {
                r[0]
                for r in await db.fetch(
                    "SELECT m FROM unnest($2::text[]) AS m WHERE EXISTS (SELECT FROM"
                    " challenge_progress WHERE challenge_id = $1 AND member_id = m)",
                    challenge.challenge_id,
                    [s.member_id for s in sent],
                )
            }
            return {
                s.member_id
                for s in sent
                if s.member_id in progressed and all(k in ran for k in s.keys)
            }

        before: dict[str, int] = {}

        async def warmed_up() -> None:
            await _analyze(db)()
            before.update(await _writes(db))

        found = await _drive(
            js, settings.event_namespace, rate, seconds, Watch(done), keys_of, warmed_up
        )
        after = await _writes(db)
        actions: AnsweringActions = root.actions  # type: ignore[assignment]
        found["actions_called"] = len(actions.calls)
        published = max(1, found["published"])
        found["rows_written_per_event"] = {
            table: round((after.get(table, 0) - count) / published, 2)
            for table, count in {**{t: 0 for t in after}, **before}.items()
            if after.get(table, 0) - count
        }
        return found
    finally:
        await client.close()
        await service.stop(grace=0.5)
        if conn is not None:
            await conn.close()


async def raw(settings: Settings, rate: float, seconds: float) -> dict[str, Any]:
    """A bare pull consumer (fetch 100) inserting one row per event, a transaction a batch."""
    name = "engagement_triggers_raw"
    from loyalty_kit import db as kit_db

    await kit_db.ensure_database(settings.server_url, settings.database_for(name))
    params = asyncpg_params(settings.service_database_url(name))
    writer = await asyncpg.connect(**params)
    reader = await asyncpg.connect(**params)
    client = await nats.connect(settings.nats_url)
    consuming: asyncio.Task[None] | None = None
    try:
        await writer.execute(RAW_TABLE)
        js = client.jetstream()
        namespace = settings.event_namespace
        stream = await events.ensure_stream(js, namespace, "points")
        durable = "bench_raw_triggers"
        subject = events.subject_of(points_events.PointsEarned.DESCRIPTOR.full_name, namespace)
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                filter_subjects=[subject],
                ack_wait=30,
                max_ack_pending=1000,
            ),
        )
        sub = await js.pull_subscribe_bind(durable, stream)

        async def consume() -> None:
            while True:
                try:
                    messages = await sub.fetch(100, timeout=1.0)
                except (FetchTimeoutError, TimeoutError):
                    continue
                rows = []
                for msg in messages:
                    event = points_events.PointsEarned()
                    event.ParseFromString(msg.data)
                    rows.append(((msg.headers or {})[EVENT_ID_HEADER], event.member_id))
                async with writer.transaction():
                    await writer.executemany(
                        "INSERT INTO bench_trigger_rows VALUES ($1, $2, now())"
                        " ON CONFLICT DO NOTHING",
                        rows,
                    )
                for msg in messages:
                    await msg.ack()

        consuming = asyncio.create_task(consume())

        async def done(sent: list[Sent]) -> set[str]:
            rows = await reader.fetch(
                "SELECT r.member_id FROM unnest($1::text[]) AS k"
                " JOIN bench_trigger_rows AS r ON r.event_id = k",
                [s.keys[0] for s in sent],
            )
            return {r[0] for r in rows}

        def keys_of(_member_id: str, _posting_id: str, event_id: str) -> tuple[str, ...]:
            return (event_id,)

        return await _drive(js, namespace, rate, seconds, Watch(done), keys_of, _analyze(reader))
    finally:
        if consuming is not None:
            consuming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consuming
        # The service's consumers (deliver all) must not find these events after it.
        with contextlib.suppress(Exception):
            await client.jetstream().delete_stream(
                events.stream_name(settings.event_namespace, "points")
            )
        await client.close()
        await writer.close()
        await reader.close()


def result(service: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """Both runs (latency lists left out) and the comparison."""
    both = {k: v for k, v in service.items() if k != "latencies_ms"}
    p99 = service["p99_ms"]
    sustained = not service["missing"] and service["throughput"] >= 0.95 * service["rate"] * (
        service["publish_seconds"] / service["seconds"]
    )
    return {
        **both,
        "raw": {k: v for k, v in plain.items() if k != "latencies_ms"},
        "ratio": round(service["throughput"] / plain["throughput"], 3)
        if plain["throughput"]
        else None,
        "p99_vs_raw": round(p99 / plain["p99_ms"], 2) if p99 and plain["p99_ms"] else None,
        "goal_rate": GOAL_RATE,
        "goal_p99_ms": GOAL_P99_MS,
        "goal_met": bool(
            p99 is not None and p99 <= GOAL_P99_MS and sustained and service["rate"] >= GOAL_RATE
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


async def measure(rate: float, seconds: float, folder: Path) -> dict[str, Any]:
    infra = Infrastructure(folder, keep=False)
    infra.start()
    run_id = f"b{os.getpid()}{uuid.uuid4().hex[:6]}"
    ctx = BenchContext(
        infra=infra, run_id=run_id, seconds=seconds, warmup=0, concurrency=1, events=0
    )
    try:
        plain = await raw(ctx.settings(), rate, seconds)
        service = await through_service(ctx.settings(), rate, seconds)
        return result(service, plain)
    finally:
        with contextlib.suppress(Exception):
            await ctx.cleanup()
        infra.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=GOAL_RATE)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engagement-triggers-") as folder:
        found = asyncio.run(measure(args.rate, args.seconds, Path(folder)))
    emit("engagement_triggers", found, args.out)


if __name__ == "__main__":
    main()
