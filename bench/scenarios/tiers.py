"""Tiers: an upgrade's two event hops under a steady earn load, and the tier-year judgement of
many members; each against plain asyncpg + nats-py doing the same work in the same run.

`tiers-upgrade-latency` runs the points and tiers services in-process (start_service, migrations
on, relays and consumers running, service defaults: outbox linger 0.01 s, NOTIFY wake-ups) and
starts `EarnPoints` at a steady `--rate` (open loop), each for a fresh member with a
CNY 5,000.00 order at the mall: exactly the silver threshold of the Huayue ladder, so every earn
upgrades one member. A NATS subscriber on the TierChanged subject times, per member, the earn's
answer (its commit came just before) -> the member's TierChanged arriving: PointsEarned through
points' outbox relay to JetStream, tiers' consumer, its commit, TierChanged through tiers' relay.

`tiers-year-end` times one `RunYearEnd` over `--members` members whose tier year has ended
(bulk-loaded with COPY: member_tiers plus one to three activity rows in the tier year, about half
of them enough to keep the tier), and checks the outcome.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.common.v1 import channel_pb2, money_pb2
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_devstack.demo import huayue_ladder, huayue_programme
from loyalty_kit import events
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params, quote_ident
from loyalty_kit.events import MSG_ID_HEADER, event_subject
from loyalty_kit.migrations import upgrade_database
from loyalty_kit.server import RunningService, start_service
from loyalty_kit.settings import Settings
from loyalty_points.app import SPEC as POINTS_SPEC
from loyalty_tiers.app import SPEC as TIERS_SPEC
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError
from sqlalchemy.engine import URL

from bench.context import BenchContext
from bench.counters import HEALTH_STATEMENT, RELAY_STATEMENTS, DriverCounter
from bench.load import open_loop, percentile
from bench.registry import Measurement, scenario
from bench.scenarios.points import ActiveMembers, seed_accounts

CALL_TIMEOUT = 30.0
YEAR_END_TIMEOUT = 3600.0
POS = Caller(unit="mall", client_id="bench-pos", scopes=frozenset({"earn"}))
ADMIN = Caller(unit="group", client_id="bench", scopes=frozenset({"admin"}))
# Not the work being counted: the relay's and health probes' statements (their transactions'
# BEGIN and COMMIT are taken off by `_work`), and what a new connection runs once.
BACKGROUND = (*RELAY_STATEMENTS, HEALTH_STATEMENT)
SETUP = (
    "SELECT current_setting('jit')",
    "SELECT set_config('jit'",
    "WITH RECURSIVE typeinfo_tree",
    "select pg_catalog.version()",
    "select current_schema()",
    "show ",
)


def _work(counter: DriverCounter) -> int:
    """Statements of the counted work: all but background and connection set-up, less a BEGIN
    and a COMMIT (or ROLLBACK) per relay round and health probe."""
    rounds = sum(
        n
        for q, n in counter.by_text.items()
        if q.startswith(RELAY_STATEMENTS[0]) or q == HEALTH_STATEMENT
    )
    return counter.count(excluding=(*BACKGROUND, *SETUP)) - 2 * rounds


def _relay_rounds(counter: DriverCounter) -> int:
    return sum(n for q, n in counter.by_text.items() if q.startswith(RELAY_STATEMENTS[0]))


def _progress(text: str) -> None:
    print(f"bench: tiers: {text}", file=sys.stderr, flush=True)


def _ms(values: Sequence[float], q: float) -> float | None:
    return round(percentile(values, q), 3) if values else None


# --- tiers-upgrade-latency / raw-event-hop ---------------------------------------------------
SILVER_ORDER = "5000.00"  # CNY at the mall: exactly silver's 12-month threshold
SEQUENTIAL_UPGRADES = 30  # one at a time after the measurement: unloaded latency, SQL counted
DRAIN_SECONDS = 30.0  # after the last earn, how long missing TierChanged are waited for
HOP_SHARED = "raw-event-hop"  # the ceiling's latencies, for the service's extra


@dataclass
class Hops:
    """Per member: when its earn committed (as the caller saw it), its PointsEarned arrived
    (the first hop, the points relay's) and its TierChanged arrived (both hops)."""

    committed: dict[str, float] = field(default_factory=dict)
    relayed: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    unexpected: int = 0  # TierChanged of another kind or member (must stay 0)

    async def on_earned(self, msg: Msg) -> None:
        event = points_events.PointsEarned.FromString(msg.data)
        self.relayed.setdefault(event.member_id, time.perf_counter())

    async def on_message(self, msg: Msg) -> None:
        event = tier_events.TierChanged.FromString(msg.data)
        if event.to_tier == "silver" and event.reason == "qualified":
            self.arrived.setdefault(event.member_id, time.perf_counter())
        else:
            self.unexpected += 1

    async def wait(self, members: Sequence[str], patience: float) -> None:
        """Until every member's TierChanged arrived, or none came for `patience` seconds."""
        last, seen = time.perf_counter(), -1
        while True:
            now = sum(1 for m in members if m in self.arrived)
            if now == len(members):
                return
            if now != seen:
                last, seen = time.perf_counter(), now
            elif time.perf_counter() - last > patience:
                return
            await asyncio.sleep(0.02)

    def latencies_ms(self, members: Sequence[str], *, first_hop: bool = False) -> list[float]:
        """Commit -> TierChanged (or -> PointsEarned) of those members whose message came."""
        to = self.relayed if first_hop else self.arrived
        return [
            (to[m] - self.committed[m]) * 1000.0 for m in members if m in to and m in self.committed
        ]


Earn = Callable[[str], Awaitable[float]]  # earn for a member; returns the moment it committed


Subjects = tuple[str, str]  # where PointsEarned and TierChanged are published


async def _watch(nats_url: str, subjects: Subjects, hops: Hops) -> Any:
    """A plain NATS subscriber to both (JetStream publishes reach it as they are stored)."""
    client = await events.connect(nats_url, "loyalty-bench-watch")
    await client.subscribe(subjects[0], cb=hops.on_earned)
    await client.subscribe(subjects[1], cb=hops.on_message)
    await client.flush()
    return client


async def _sequential(
    nats_url: str, earn: Earn, subjects: Subjects, members: Sequence[str]
) -> dict[str, float | None]:
    """One upgrade at a time, each waited for: the latency without queueing (extra)."""
    hops = Hops()
    watcher = await _watch(nats_url, subjects, hops)
    try:
        for member in members:
            hops.committed[member] = await earn(member)
            await hops.wait([member], DRAIN_SECONDS)
    finally:
        await watcher.close()
    latencies, first = hops.latencies_ms(members), hops.latencies_ms(members, first_hop=True)
    return {
        "unloaded_p50_ms": _ms(latencies, 50),
        "unloaded_p99_ms": _ms(latencies, 99),
        "unloaded_first_hop_p50_ms": _ms(first, 50),
    }


async def _drive_hops(
    ctx: BenchContext, earn: Earn, subjects: Subjects, members: Sequence[str]
) -> Measurement:
    """Earns at --rate for --warmup + --seconds, one member each, then every TierChanged awaited.

    `members` holds at least as many as the phase needs (rate x time). Only the members earned
    after the warm-up count: latency, throughput (their TierChanged over the time from the first
    of their earns to the last of their arrivals) and the share that arrived.
    """
    warm = round(ctx.rate * ctx.warmup)
    total = warm + max(1, round(ctx.rate * ctx.seconds))
    if total > len(members):
        raise ValueError(f"{total} earns need as many members, {len(members)} prepared")
    hops = Hops()
    client = await _watch(ctx.infra.nats_url, subjects, hops)
    earn_ms: list[float] = []
    started: dict[int, float] = {}

    async def op(i: int) -> None:
        started[i] = time.perf_counter()
        hops.committed[members[i]] = await earn(members[i])
        if i >= warm:
            earn_ms.append((hops.committed[members[i]] - started[i]) * 1000.0)

    try:
        load_average = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        loop = await open_loop(op, rate=ctx.rate, count=total)
        measured = members[warm:total]
        await hops.wait(measured, DRAIN_SECONDS)
        cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
        latencies = hops.latencies_ms(measured)
        if not latencies:
            raise AssertionError(f"no TierChanged on {subjects[1]} for {len(measured)} earns")
        last = max(hops.arrived[m] for m in measured if m in hops.arrived)
        result = Measurement(
            count=len(latencies),
            seconds=last - started[warm],
            concurrency=loop.peak_in_flight,
            unit="upgrades",
            latencies_ms=latencies,
        )
        first_hop = hops.latencies_ms(measured, first_hop=True)
        result.extra.update(
            rate=ctx.rate,
            earns=len(measured),
            arrived_pct=round(100.0 * len(latencies) / len(measured), 2),
            first_hop_p50_ms=_ms(first_hop, 50),  # commit -> PointsEarned at the subscriber
            first_hop_p99_ms=_ms(first_hop, 99),
            warmup_earns=warm,
            earn_p50_ms=_ms(earn_ms, 50),
            earn_p99_ms=_ms(earn_ms, 99),
            max_latency_ms=round(max(latencies), 3),
            schedule_max_lag_ms=round(loop.max_lag_ms, 1),
            peak_earns_in_flight=loop.peak_in_flight,
            unexpected_tier_changes=hops.unexpected,
            load_average_1m=round(load_average, 2),
            process_cpu_share=round(cpu_share, 2),
        )
        if hops.unexpected:
            raise AssertionError(f"{hops.unexpected} TierChanged other than basic -> silver")
        return result
    finally:
        await client.close()


# The ceiling: the same two hops on plain asyncpg + nats-py.
RAW_TABLES = (
    "CREATE TABLE earns (member_id uuid PRIMARY KEY, posting_id uuid NOT NULL, "
    "spend numeric NOT NULL, occurred_at timestamptz NOT NULL)",
    "CREATE TABLE tier_changes (member_id uuid PRIMARY KEY, to_tier text NOT NULL, "
    "changed_at timestamptz NOT NULL)",
)
RAW_SERVICE = "rawhop"  # stream `<NS>_RAWHOP`, subjects `<ns>.rawhop.v1.>`


class RawHop:
    """First hop: INSERT an earn, commit, publish a PointsEarned (ack awaited). Second hop: a
    durable pull consumer (batches of 100, as the kit's) that per message INSERTs the change in
    its own transaction, publishes a TierChanged (ack awaited) and acks."""

    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext, namespace: str) -> None:
        self.pool = pool
        self.js = js
        self.namespace = namespace
        prefix = f"{namespace}.{RAW_SERVICE}.v1"
        self.first = f"{prefix}.PointsEarned"
        self.second = f"{prefix}.TierChanged"
        self.handled = 0

    async def earn(self, member: str) -> float:
        posting_id, now = uuid.uuid4(), datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO earns (member_id, posting_id, spend, occurred_at) "
                "VALUES ($1, $2, $3, $4)",
                uuid.UUID(member),
                posting_id,
                Decimal(SILVER_ORDER),
                now,
            )
        committed = time.perf_counter()
        at = Timestamp()
        at.FromDatetime(now)
        event = points_events.PointsEarned(
            member_id=member,
            posting_id=str(posting_id),
            unit="mall",
            qualifying_spend_base=money_pb2.Money(currency_code="CNY", amount=SILVER_ORDER),
            points=5000,
            occurred_at=at,
        )
        payload = event.SerializeToString(deterministic=True)
        await self.js.publish(self.first, payload, headers={MSG_ID_HEADER: str(posting_id)})
        return committed

    async def _handle(self, msg: Msg) -> None:
        earned = points_events.PointsEarned.FromString(msg.data)
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO tier_changes (member_id, to_tier, changed_at) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                uuid.UUID(earned.member_id),
                "silver",
                now,
            )
        at = Timestamp()
        at.FromDatetime(now)
        changed = tier_events.TierChanged(
            member_id=earned.member_id,
            from_tier="basic",
            to_tier="silver",
            reason="qualified",
            effective_at=at,
        )
        await self.js.publish(
            self.second,
            changed.SerializeToString(deterministic=True),
            headers={MSG_ID_HEADER: f"tier-{earned.posting_id}"},
        )
        await msg.ack()
        self.handled += 1

    async def subscribe(self) -> Any:
        """The stream (both subjects) and the consumer's pull subscription, before any earn."""
        stream = await events.ensure_stream(self.js, self.namespace, RAW_SERVICE)
        config = ConsumerConfig(
            durable_name="raw-hop",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=self.first,
            ack_wait=30,
            max_ack_pending=1000,
        )
        await self.js.add_consumer(stream, config)
        return await self.js.pull_subscribe_bind("raw-hop", stream)

    async def consume(self, sub: Any) -> None:
        while True:
            try:
                messages = await sub.fetch(100, timeout=1.0)
            except (FetchTimeoutError, TimeoutError):
                continue
            for msg in messages:
                await self._handle(msg)


def _fresh_members(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def _members_needed(ctx: BenchContext) -> int:
    return (
        round(ctx.rate * ctx.warmup) + max(1, round(ctx.rate * ctx.seconds)) + SEQUENTIAL_UPGRADES
    )


@scenario("raw-event-hop")
async def raw_event_hop(ctx: BenchContext) -> Measurement:
    """Ceiling: asyncpg INSERT + JetStream publish; a pull consumer INSERTs and publishes again.

    The two hops of an upgrade without the kit or the services, at the same --rate and measured
    the same way (the first INSERT's commit -> the second message at a NATS subscriber): no
    outbox (published right after the commit), no inbox, one small row per hop. Both messages
    are the real PointsEarned / TierChanged protobufs; one stream of the run holds both.
    """
    url = await ctx.database("raw_hop")
    size = 2 * ctx.settings().database_pool_size
    pool = await asyncpg.create_pool(**asyncpg_params(url), min_size=2, max_size=size)
    client = await events.connect(ctx.infra.nats_url, "loyalty-bench-raw-hop")
    consumer: asyncio.Task[None] | None = None
    try:
        for statement in RAW_TABLES:
            await pool.execute(statement)
        js = client.jetstream()
        hop = RawHop(pool, js, ctx.namespace)
        consumer = asyncio.create_task(hop.consume(await hop.subscribe()))
        members = _fresh_members(_members_needed(ctx))
        subjects = (hop.first, hop.second)
        measured = await _drive_hops(ctx, hop.earn, subjects, members)
        if consumer.done():
            consumer.result()  # raises what stopped it
        unloaded = await _sequential(
            ctx.infra.nats_url, hop.earn, subjects, members[-SEQUENTIAL_UPGRADES:]
        )
        measured.extra.update(unloaded, pool_size=size)
        latencies = measured.latencies_ms or []
        ctx.shared[HOP_SHARED] = (percentile(latencies, 50), percentile(latencies, 99))
        return measured
    finally:
        if consumer is not None:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
        await client.close()
        await pool.close()


async def _publish_rules(points: RunningService, tiers: RunningService) -> None:
    async with grpc.aio.insecure_channel(points.target) as channel:
        await points_service_pb2_grpc.PointsServiceStub(channel).UpdateProgramme(
            points_pb.UpdateProgrammeRequest(
                programme=huayue_programme(), reason="bench", request_id="bench-programme-v1"
            ),
            metadata=ADMIN.metadata(),
            timeout=CALL_TIMEOUT,
        )
    async with grpc.aio.insecure_channel(tiers.target) as channel:
        await tiers_service_pb2_grpc.TiersServiceStub(channel).UpdateLadder(
            tiers_pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id="bench-ladder-v1"),
            metadata=ADMIN.metadata(),
            timeout=CALL_TIMEOUT,
        )


def _earner(channel: grpc.aio.Channel) -> Earn:
    stub = points_service_pb2_grpc.PointsServiceStub(channel)
    metadata = POS.metadata()
    amount = money_pb2.Money(currency_code="CNY", amount=SILVER_ORDER)

    async def earn(member: str) -> float:
        request = points_pb.EarnPointsRequest(
            member=f"members/{member}",
            request_id=uuid.uuid4().hex,
            unit="mall",
            channel=channel_pb2.CHANNEL_POS,
            order_id=f"bench-{uuid.uuid4().hex}",
            lines=[points_pb.OrderLine(line_id="1", amount=amount, quantity=1)],
        )
        reply = await stub.EarnPoints(request, metadata=metadata, timeout=CALL_TIMEOUT)
        committed = time.perf_counter()
        if reply.posting.points != 5000:
            raise AssertionError(f"earned {reply.posting.points} points for CNY {SILVER_ORDER}")
        return committed

    return earn


@scenario("tiers-upgrade-latency", ceiling="raw-event-hop")
async def tiers_upgrade_latency(ctx: BenchContext) -> Measurement:
    """EarnPoints at --rate, each upgrading a fresh member: earn commit -> TierChanged received.

    Points and tiers services in-process (start_service, their own databases and event
    namespace `<run>_upgrade`, so no other scenario's events reach them; service defaults for
    the relays), Huayue programme and ladder published as an admin, every member's points
    account COPYed first (as in points-earn: the member directory is the in-process stand-in,
    so no identity service is asked). After the measurement, upgrades one at a time give the
    latency without queueing and the SQL per upgrade on the tiers service's engine.
    """
    settings = ctx.settings(
        database_prefix=f"{ctx.run_id}_upgrade_", event_namespace=f"{ctx.run_id}_upgrade"
    )
    members = _fresh_members(_members_needed(ctx))
    points = await start_service(POINTS_SPEC, settings, port=0, directory=ActiveMembers())
    tiers: RunningService | None = None
    try:
        tiers = await start_service(TIERS_SPEC, settings, port=0)
        await points.wait_until_serving()
        await tiers.wait_until_serving()
        await _publish_rules(points, tiers)
        conn = await asyncpg.connect(**asyncpg_params(settings.service_database_url("points")))
        try:
            await seed_accounts(conn, members)
        finally:
            await conn.close()
        namespace = settings.event_namespace
        subjects = (
            event_subject(points_events.PointsEarned(), namespace),
            event_subject(tier_events.TierChanged(), namespace),
        )
        async with grpc.aio.insecure_channel(points.target) as channel:
            await channel.channel_ready()
            earn = _earner(channel)
            measured = await _drive_hops(ctx, earn, subjects, members)
            engine = tiers.context.engine
            assert engine is not None
            counter = DriverCounter(engine)
            try:
                unloaded = await _sequential(
                    ctx.infra.nats_url, earn, subjects, members[-SEQUENTIAL_UPGRADES:]
                )
                await asyncio.sleep(0.05)  # the query logger reports on the next loop turns
            finally:
                counter.remove()
        n = SEQUENTIAL_UPGRADES
        measured.extra.update(
            unloaded,
            outbox_linger_seconds=settings.outbox_linger_seconds,
            outbox_poll_seconds=settings.outbox_poll_seconds,
            outbox_batch_size=settings.outbox_batch_size,
            tiers_statements_per_upgrade=round(_work(counter) / n, 2),
            tiers_statement_ms_per_upgrade=round(
                counter.seconds(excluding=(*BACKGROUND, *SETUP)) * 1000 / n, 2
            ),
            tiers_relay_rounds_per_upgrade=round(_relay_rounds(counter) / n, 2),
            tiers_checkouts_per_upgrade=round(counter.checkouts / n, 2),
            tiers_statements=counter.top(14, excluding=(*BACKGROUND, *SETUP)),
        )
        ceiling = ctx.shared.get(HOP_SHARED)
        latencies = measured.latencies_ms or []
        if ceiling and latencies:
            measured.extra["p50_vs_ceiling"] = round(percentile(latencies, 50) / ceiling[0], 2)
            measured.extra["p99_vs_ceiling"] = round(percentile(latencies, 99) / ceiling[1], 2)
        return measured
    finally:
        if tiers is not None:
            await tiers.stop(grace=0.5)
        await points.stop(grace=0.5)


# --- tiers-year-end / raw-year-end -----------------------------------------------------------
FULL_MEMBERS = 1_000_000  # when a year-end scenario is named with --only
DEFAULT_MEMBERS = 100_000  # in a run of every scenario (make bench), to keep it short
YEAR_END_NAMES = ("tiers-year-end", "raw-year-end")
CHUNK = 500  # members per transaction, the service's default
COUNTED_MEMBERS = 2 * CHUNK  # judged first, untimed, with SQL counted (the earliest ends)
LOAD_BATCH = 50_000  # members per COPY transaction
SAMPLE = 300  # judged members whose rows are checked afterwards
TIERS = ("silver",) * 6 + ("gold",) * 3 + ("platinum",)  # drawn from: 60%, 30%, 10%
UNITS = ("mall", "hotel", "cinema")
YEAR_END_SHARED = "tiers-year-end-population"
SALT = b"tiers-year-end"  # of the hash members are drawn from


def year_end_members(ctx: BenchContext) -> int:
    """--members, else 1,000,000 when a year-end scenario was named with --only, else 100,000."""
    if ctx.members is not None:
        return ctx.members
    return FULL_MEMBERS if any(name in ctx.only for name in YEAR_END_NAMES) else DEFAULT_MEMBERS


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months later, the day clamped to the month's end (as the tier year runs)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


@dataclass(frozen=True)
class Rules:
    """The Huayue ladder as the judgement needs it: retention thresholds, one level down."""

    order: tuple[str, ...]
    retention: dict[str, Decimal]

    @classmethod
    def huayue(cls) -> Rules:
        ladder = huayue_ladder()
        order = tuple(t.code for t in ladder.tiers)
        retention = {
            t.code: Decimal(t.retention_thresholds[0].value)
            for t in ladder.tiers
            if t.retention_thresholds
        }
        return cls(order, retention)

    def lower(self, tier: str) -> str:
        return self.order[self.order.index(tier) - 1]


@dataclass
class Population:
    """Members whose tier year ended, the i-th's end before the (i+1)-th's; made from a seed."""

    count: int  # judged in the timed run
    now: datetime
    rules: Rules = field(default_factory=Rules.huayue)

    @property
    def total(self) -> int:
        return COUNTED_MEMBERS + self.count

    def end(self, i: int) -> datetime:
        """Ends spread over the 300 days up to a day ago: a year later, all lie ahead."""
        span = timedelta(days=300).total_seconds()
        return self.now - timedelta(days=301) + timedelta(seconds=span * i / self.total)

    @property
    def counted_as_of(self) -> datetime:
        return self.end(COUNTED_MEMBERS - 1)

    @property
    def as_of(self) -> datetime:
        return self.now

    def member(self, i: int) -> tuple[uuid.UUID, str, bool, list[tuple[datetime, Decimal]]]:
        """Member i: id, tier, whether the year's activity keeps it, and that activity (all
        drawn from a hash of i: the same every time, and cheap enough for millions)."""
        digest = hashlib.blake2b(i.to_bytes(8, "little"), digest_size=32, salt=SALT).digest()
        member_id = uuid.UUID(bytes=digest[:16], version=4)
        draw = int.from_bytes(digest[16:], "little")  # 128 random bits, used up below

        def pick(n: int) -> int:
            nonlocal draw
            draw, value = divmod(draw, n)
            return value

        tier = TIERS[pick(len(TIERS))]
        kept = pick(2) == 1
        needed = int(self.rules.retention[tier] * 100)  # cents
        cents = needed + pick(needed + 1) if kept else needed // 20 + pick(needed - needed // 20)
        cuts = sorted(pick(cents + 1) for _ in range(pick(3)))
        amounts = [b - a for a, b in zip([0, *cuts], [*cuts, cents], strict=True)]
        end = self.end(i)
        rows = [
            (end - timedelta(seconds=86_400 + pick(349 * 86_400)), Decimal(a) / 100)
            for a in amounts
        ]
        return member_id, tier, kept, rows

    def batch(
        self, start: int, stop: int
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
        """member_tiers and activity rows of members start..stop-1, and how many keep the tier."""
        tiers, activity = [], []
        kept = 0
        for i in range(start, stop):
            member_id, tier, keeps, rows = self.member(i)
            kept += keeps and i >= COUNTED_MEMBERS
            end = self.end(i)
            tiers.append((member_id, tier, add_months(end, -12), end, tier))
            for k, (at, spend) in enumerate(rows):
                unit = UNITS[k % len(UNITS)]
                activity.append((member_id, f"bench-{i}-{k}", at, spend, int(spend), 1, unit))
        return tiers, activity, kept


@dataclass
class Loaded:
    population: Population
    template: str  # the loaded database, copied for each scenario
    load_seconds: float
    activity_rows: int
    expected: tuple[int, int]  # retained, downgraded in the timed run

    def extra(self) -> dict[str, Any]:
        return {
            "members": self.population.count,
            "activity_rows": self.activity_rows,
            "load_seconds": round(self.load_seconds, 1),
            "load_members_per_s": round(self.population.total / self.load_seconds),
            "chunk_size": CHUNK,
        }


async def _population(ctx: BenchContext) -> Loaded:
    """`<run>_yearend_seed`, migrated like the service's database and loaded with COPY, once per
    run; each scenario gets a copy (CREATE DATABASE ... TEMPLATE) to judge."""
    loaded = ctx.shared.get(YEAR_END_SHARED)
    if isinstance(loaded, Loaded):
        return loaded
    population = Population(year_end_members(ctx), datetime.now(UTC).replace(microsecond=0))
    template = f"{ctx.run_id}_yearend_seed"
    url = await ctx.database("yearend_seed")
    started = time.perf_counter()
    assert TIERS_SPEC.migrations is not None
    await upgrade_database(url, TIERS_SPEC.migrations)
    _progress(f"loading {population.total:,} members into {template}")
    conn = await asyncpg.connect(**asyncpg_params(url))
    rows = kept = 0
    try:
        for start in range(0, population.total, LOAD_BATCH):
            stop = min(start + LOAD_BATCH, population.total)
            tiers, activity, keeps = population.batch(start, stop)
            kept += keeps
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "member_tiers",
                    columns=("member_id", "tier", "since", "tier_year_end", "effective_tier"),
                    records=tiers,
                )
                await conn.copy_records_to_table(
                    "activity",
                    columns=(
                        "member_id",
                        "event_id",
                        "occurred_at",
                        "spend",
                        "points",
                        "visits",
                        "unit",
                    ),
                    records=activity,
                )
            rows += len(activity)
            if stop % 100_000 == 0 or stop == population.total:
                rate = stop / (time.perf_counter() - started)
                _progress(f"{stop:,} members loaded ({rate:,.0f}/s)")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    expected = (kept, population.count - kept)
    loaded = Loaded(population, template, time.perf_counter() - started, rows, expected)
    _progress(f"loaded in {loaded.load_seconds:.1f}s")
    ctx.shared[YEAR_END_SHARED] = loaded
    return loaded


async def _copy_of(settings: Settings, loaded: Loaded, name: str) -> URL:
    """A fresh database `name` holding the loaded population (file copy of the template)."""
    conn = await asyncpg.connect(**asyncpg_params(settings.server_url))
    try:
        await conn.execute(
            f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(loaded.template)} "
            "STRATEGY FILE_COPY"
        )
    finally:
        await conn.close()
    return settings.server_url.set(database=name)


async def _verify(url: URL, loaded: Loaded, judged: int, retained: int, downgraded: int) -> int:
    """The counts as made, and a sample of members as each should now stand; TierChanged
    events (the outbox) and history rows are counted by the caller."""
    population = loaded.population
    if judged != population.count or retained + downgraded != judged:
        raise AssertionError(
            f"judged {judged} (retained {retained}, downgraded {downgraded}) "
            f"of {population.count} members"
        )
    if (retained, downgraded) != loaded.expected:
        raise AssertionError(
            f"retained/downgraded {retained}/{downgraded}, expected {loaded.expected}"
        )
    rng = random.Random()
    sample = rng.sample(range(COUNTED_MEMBERS, population.total), min(SAMPLE, population.count))
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        for i in sample:
            member_id, tier, kept, _ = population.member(i)
            row = await conn.fetchrow(
                "SELECT tier, effective_tier, tier_year_end FROM member_tiers WHERE member_id = $1",
                member_id,
            )
            want = tier if kept else population.rules.lower(tier)
            end = population.end(i)
            want_end = None if want == "basic" else add_months(end, 12)
            got = (
                None if row is None else (row["tier"], row["effective_tier"], row["tier_year_end"])
            )
            if got != (want, want, want_end):
                raise AssertionError(
                    f"member {i} ({tier}, kept={kept}): {got}, not {want}/{want_end}"
                )
        left = await conn.fetchval(
            "SELECT count(*) FROM member_tiers WHERE tier_year_end <= $1", population.as_of
        )
        if left:
            raise AssertionError(f"{left} members still due after the run")
    finally:
        await conn.close()
    return len(sample)


# The ceiling: plain asyncpg, set-based per chunk.
# Both find a chunk's due members with `WHERE tier_year_end <= $1 ORDER BY tier_year_end LIMIT`.
DUE_QUERY_MARK = "FROM member_tiers WHERE tier_year_end <="
RAW_OUTBOX = (
    "CREATE TABLE raw_outbox (seq bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, "
    "subject text NOT NULL, event_type text NOT NULL, payload bytea NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now())"
)
DUE = f"""
WITH due AS (
    SELECT member_id, tier, tier_year_end {DUE_QUERY_MARK} $1
    ORDER BY tier_year_end LIMIT $2 FOR UPDATE
)
SELECT d.member_id, d.tier, d.tier_year_end, coalesce(sum(a.spend), 0) AS spend
FROM due d LEFT JOIN activity a
  ON a.member_id = d.member_id
 AND a.occurred_at >= d.tier_year_end - interval '12 months' AND a.occurred_at <= d.tier_year_end
GROUP BY d.member_id, d.tier, d.tier_year_end
"""
JUDGE = """
UPDATE member_tiers m
   SET tier = u.tier, effective_tier = u.tier, since = coalesce(u.since, m.since),
       tier_year_end = u.tier_year_end
  FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[])
       AS u(member_id, tier, since, tier_year_end)
 WHERE m.member_id = u.member_id
"""
HISTORY = (
    "INSERT INTO tier_history (member_id, from_tier, to_tier, reason, changed_at) "
    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])"
)
EVENTS = (
    "INSERT INTO raw_outbox (event_id, subject, event_type, payload) "
    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[])"
)
RAW_STATEMENTS_PER_CHUNK = 4  # DUE, JUDGE, HISTORY, EVENTS (plus BEGIN and COMMIT)


def _timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


async def _raw_chunk(
    conn: asyncpg.Connection, rules: Rules, as_of: datetime, namespace: str
) -> tuple[int, int, float]:
    """One chunk judged in one transaction: retained, downgraded, seconds the DUE query took."""
    subject = event_subject(tier_events.TierChanged(), namespace)
    event_type = tier_events.TierChanged.DESCRIPTOR.full_name
    async with conn.transaction():
        asked = time.perf_counter()
        rows = await conn.fetch(DUE, as_of, CHUNK)
        due = time.perf_counter() - asked
        ids, tiers, sinces, ends, froms, reasons, payloads = [], [], [], [], [], [], []
        kept = 0
        for row in rows:
            end: datetime = row["tier_year_end"]
            tier = row["tier"]
            retained = row["spend"] >= rules.retention[tier]
            after = tier if retained else rules.lower(tier)
            next_end = None if after == rules.order[0] else add_months(end, 12)
            kept += retained
            ids.append(row["member_id"])
            tiers.append(after)
            sinces.append(None if retained else end)
            ends.append(next_end)
            froms.append(tier)
            reasons.append("retained" if retained else "downgraded")
            event = tier_events.TierChanged(
                member_id=str(row["member_id"]),
                from_tier=tier,
                to_tier=after,
                reason=reasons[-1],
                effective_at=_timestamp(end),
            )
            if next_end is not None:
                event.tier_year_end.CopyFrom(_timestamp(next_end))
            payloads.append(event.SerializeToString(deterministic=True))
        if rows:
            await conn.execute(JUDGE, ids, tiers, sinces, ends)
            at = [r["tier_year_end"] for r in rows]
            await conn.execute(HISTORY, ids, froms, tiers, reasons, at)
            await conn.execute(
                EVENTS,
                [uuid.uuid4() for _ in rows],
                [subject] * len(rows),
                [event_type] * len(rows),
                payloads,
            )
    return kept, len(rows) - kept, due


def _tenths(seconds: Sequence[float]) -> dict[str, float | None]:
    """Mean time of the query finding a chunk's due members over the first and the last tenth
    of the chunks: whether it slows down as judged members pile up in the index."""
    if not seconds:
        return {"due_ms_first_tenth": None, "due_ms_last_tenth": None}
    tenth = max(1, len(seconds) // 10)
    first, last = seconds[:tenth], seconds[-tenth:]
    return {
        "due_ms_first_tenth": round(1000 * sum(first) / len(first), 2),
        "due_ms_last_tenth": round(1000 * sum(last) / len(last), 2),
    }


@dataclass
class RawRun:
    retained: int = 0
    downgraded: int = 0
    due_seconds: list[float] = field(default_factory=list)  # per chunk


async def _raw_year_end(
    conn: asyncpg.Connection, rules: Rules, as_of: datetime, namespace: str
) -> RawRun:
    run = RawRun()
    while True:
        kept, down, due = await _raw_chunk(conn, rules, as_of, namespace)
        run.retained, run.downgraded = run.retained + kept, run.downgraded + down
        run.due_seconds.append(due)
        if kept + down < CHUNK:
            return run


async def _written(url: URL, table: str, event_type: str) -> tuple[int, int]:
    """TierChanged rows in the outbox table and rows of tier_history."""
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        events_written = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE event_type = $1", event_type
        )
        history = await conn.fetchval("SELECT count(*) FROM tier_history")
    finally:
        await conn.close()
    return int(events_written), int(history)


@scenario("raw-year-end")
async def raw_year_end(ctx: BenchContext) -> Measurement:
    """Ceiling: plain asyncpg judging the same members set-based, 4 statements per chunk.

    On its own copy of the loaded population, per chunk of 500 in one transaction: the due
    members (FOR UPDATE) joined to the sum of their activity within the tier year, one
    UPDATE ... FROM unnest of the outcomes, one INSERT of the history rows and one INSERT of
    the TierChanged events (the protobufs the service writes) into a plain outbox-shaped table
    (no trigger, nothing relays it). The first 1,000 members are judged first, untimed.
    """
    loaded = await _population(ctx)
    population = loaded.population
    settings = ctx.settings()
    url = await _copy_of(settings, loaded, f"{ctx.run_id}_yearend_raw")
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        await conn.execute(RAW_OUTBOX)
        await _raw_year_end(conn, population.rules, population.counted_as_of, ctx.namespace)
        spent: list[float] = []  # each statement's time, as asyncpg logs it

        def log(record: Any) -> None:
            spent.append(record.elapsed)

        conn.add_query_logger(log)
        started = time.perf_counter()
        run = await _raw_year_end(conn, population.rules, population.as_of, ctx.namespace)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.05)  # the query logger reports on the next loop turns
        conn.remove_query_logger(log)
    finally:
        await conn.close()
    judged = run.retained + run.downgraded
    sampled = await _verify(url, loaded, judged, run.retained, run.downgraded)
    event_type = tier_events.TierChanged.DESCRIPTOR.full_name
    written, history = await _written(url, "raw_outbox", event_type)
    return Measurement(
        count=judged,
        seconds=elapsed,
        concurrency=1,
        unit="members",
        extra={
            **loaded.extra(),
            "judged": judged,
            "retained": run.retained,
            "downgraded": run.downgraded,
            "sample_checked": sampled,
            "tier_changed_rows": written - COUNTED_MEMBERS,
            "history_rows": history - COUNTED_MEMBERS,
            "statements_per_chunk": RAW_STATEMENTS_PER_CHUNK,
            "chunks": len(run.due_seconds),
            "statement_ms_per_chunk": round(sum(spent) * 1000 / len(run.due_seconds), 1),
            "statement_share_of_time": round(sum(spent) / elapsed, 2),
            **_tenths(run.due_seconds),
        },
    )


@scenario("tiers-year-end", ceiling="raw-year-end")
async def tiers_year_end(ctx: BenchContext) -> Measurement:
    """RunYearEnd of the tiers service over --members ended tier years (members/s), verified.

    The service (start_service, migrations on, relay running, event namespace `<run>_yearend`)
    gets its own copy of the loaded population and the Huayue ladder (UpdateLadder as an admin).
    The first 1,000 members (two chunks, the earliest ends) are judged by a first, untimed
    RunYearEnd while SQL is counted on the service's engine (asyncpg's query logger: every
    statement, SQLAlchemy's and the driver connection's); then one RunYearEnd (chunk 500) is
    timed over the rest and checked: judged = members, retained and downgraded as made, a
    sample of members' rows, one TierChanged outbox row and one history row per member.
    """
    loaded = await _population(ctx)
    population = loaded.population
    settings = ctx.settings(
        database_prefix=f"{ctx.run_id}_yearend_", event_namespace=f"{ctx.run_id}_yearend"
    )
    url = await _copy_of(settings, loaded, settings.database_for(TIERS_SPEC.name))
    service = await start_service(TIERS_SPEC, settings, port=0)
    try:
        await service.wait_until_serving()
        engine = service.context.engine
        assert engine is not None
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = tiers_service_pb2_grpc.TiersServiceStub(channel)
            await stub.UpdateLadder(
                tiers_pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id="bench-ladder"),
                metadata=ADMIN.metadata(),
                timeout=CALL_TIMEOUT,
            )
            first = await stub.RunYearEnd(  # warms up: connections, caches
                tiers_pb.RunYearEndRequest(
                    as_of=_timestamp(population.counted_as_of), chunk_size=CHUNK
                ),
                metadata=ADMIN.metadata(),
                timeout=YEAR_END_TIMEOUT,
            )
            if first.judged != COUNTED_MEMBERS:
                raise AssertionError(f"first run judged {first.judged}, not {COUNTED_MEMBERS}")
            relay = service.relay
            published_before = relay.published if relay is not None else 0
            _progress(f"RunYearEnd over {population.count:,} members ...")
            counter = DriverCounter(engine, watch=DUE_QUERY_MARK)
            try:
                started = time.perf_counter()
                reply = await stub.RunYearEnd(
                    tiers_pb.RunYearEndRequest(
                        as_of=_timestamp(population.as_of), chunk_size=CHUNK
                    ),
                    metadata=ADMIN.metadata(),
                    timeout=YEAR_END_TIMEOUT,
                )
                elapsed = time.perf_counter() - started
                await asyncio.sleep(0.05)  # the query logger reports on the next loop turns
            finally:
                counter.remove()
            published = (relay.published if relay is not None else 0) - published_before
        sampled = await _verify(url, loaded, reply.judged, reply.retained, reply.downgraded)
        event_type = tier_events.TierChanged.DESCRIPTOR.full_name
        written, history = await _written(url, "kit_outbox", event_type)
        n = COUNTED_MEMBERS
        chunks = max(1, len(counter.watched))
        statement_seconds = counter.seconds(excluding=(*BACKGROUND, *SETUP))
        return Measurement(
            count=reply.judged,
            seconds=elapsed,
            concurrency=1,
            unit="members",
            extra={
                **loaded.extra(),
                "judged": reply.judged,
                "retained": reply.retained,
                "downgraded": reply.downgraded,
                "sample_checked": sampled,
                "tier_changed_rows": written - n,
                "history_rows": history - n,
                "relay_published_meanwhile": published,
                "chunks": len(counter.watched),
                "statements_per_chunk": round(_work(counter) / chunks, 1),
                "statements_per_member": round(_work(counter) / max(1, reply.judged), 3),
                "statement_ms_per_chunk": round(statement_seconds * 1000 / chunks, 1),
                "statement_share_of_time": round(statement_seconds / elapsed, 2),
                **_tenths(counter.watched),
                "relay_rounds_per_chunk": round(_relay_rounds(counter) / chunks, 1),
                "checkouts_per_chunk": round(counter.checkouts / chunks, 1),
                "statements": counter.top(14, excluding=(*BACKGROUND, *SETUP)),
            },
        )
    finally:
        await service.stop(grace=0.5)
