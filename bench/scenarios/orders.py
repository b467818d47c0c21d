"""Past orders into tiers' activity: identity's LegacyOrdersImported chunks (mode ACTIVITY_ONLY)
through the tiers service's consumer, against one bare process doing the same inserts.

Both take the same chunks, made once per run: `--orders` orders (default 500,000) over
`--members` members (default a tenth of the orders), `CHUNK` orders an event as identity
commits them, each order at the mall for a random member, CNY 10.00-3,000.00, at a random time
in the last two years (none within two weeks of the 12-month window's edge, so which orders the
window holds cannot change while the scenario runs: the final tiers are checked exactly).

- `raw-order-activity`: one process, one asyncpg connection, a database migrated as the
  service's. Per chunk, one transaction of the service's inserts: the protobuf parsed (no
  checks), the orders (all new) `COPY`ed into `activity_orders` and `activity`, the members
  with orders inside the window marked in `upgrades_due`. No JetStream, no inbox, no merged or
  erased look-ups, no upgrade judgement.
- `tiers-order-activity`: the tiers service (start_service, migrations on, consumers, jobs and
  relay running, its own database and event namespace), the Huayue ladder published; every
  chunk published to JetStream as identity's relay would (acks awaited as they come), timed
  from the first publish until the consumer has committed the last chunk (its inbox rows,
  polled every 0.05 s): the orders are then in tiers' activity. The upgrade job judges the
  marked members meanwhile and after; `extra.judged_seconds` is the time from the first
  publish until no member is left to judge. Then checked: every order recorded once, each
  member at the tier its window's spend supports, every upgrade a history row with reason
  `qualified`.

Both report `extra.cpu_us_per_order`: the process's CPU time over the measured span, in µs an
order (for the service: the service and the publisher, not PostgreSQL).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import grpc
from loyalty.common.v1.money_pb2 import Money
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import order_import_pb2 as order_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_devstack.demo import huayue_ladder
from loyalty_identity.settings import ImportSettings
from loyalty_kit import db, events
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MSG_ID_HEADER
from loyalty_kit.migrations import upgrade_database
from loyalty_kit.server import start_service
from loyalty_kit.settings import Settings
from loyalty_kit.timestamps import timestamp
from loyalty_tiers.adapters.imports import ACTIVITY_COLUMNS, ORDER_COLUMNS
from loyalty_tiers.app import SPEC as TIERS_SPEC

from bench.context import BenchContext
from bench.registry import Measurement, scenario

DEFAULT_ORDERS = 500_000
# Orders an event, as identity commits them by default (LOYALTY_IDENTITY_IMPORT_ORDER_CHUNK_ROWS).
CHUNK: int = ImportSettings.model_fields["order_chunk_rows"].default
UNIT = "mall"
SHARED = "order-chunks"
STALL_SECONDS = 120.0  # no chunk committed for this long: the scenario fails
POLL_SECONDS = 0.05
ADMIN = Caller(unit="group", client_id="bench", scopes=frozenset({"admin"}))
# Huayue's ladder, highest first: 12-month qualifying spend in CNY.
THRESHOLDS = (
    (Decimal(300_000), "diamond"),
    (Decimal(80_000), "platinum"),
    (Decimal(20_000), "gold"),
    (Decimal(5_000), "silver"),
)
EVENT_TYPE = identity_events.LegacyOrdersImported.DESCRIPTOR.full_name


def _progress(text: str) -> None:
    print(f"bench: orders: {text}", file=sys.stderr, flush=True)


@dataclass
class Chunks:
    """The run's orders as serialised events, and what the window holds per member."""

    payloads: list[bytes]
    orders: int
    members: int
    in_window: dict[str, Decimal]  # member -> spend inside the 12-month window

    def expected_tiers(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for spend in self.in_window.values():
            found[next((tier for floor, tier in THRESHOLDS if spend >= floor), "basic")] += 1
        return found


def _chunks(ctx: BenchContext) -> Chunks:
    found = ctx.shared.get(SHARED)
    if isinstance(found, Chunks):
        return found
    count = ctx.orders or DEFAULT_ORDERS
    rng = random.Random(20261210)
    population = ctx.members or max(1, count // 10)
    members = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(population)]
    now = datetime.now(UTC).replace(microsecond=0)
    edge = now - timedelta(days=365)  # the window's start moves by seconds while this runs
    started = time.perf_counter()
    in_window: dict[str, Decimal] = {}
    payloads: list[bytes] = []
    chunk = identity_events.LegacyOrdersImported(
        order_import="orderImports/bench", unit=UNIT, mode=order_pb.ORDER_IMPORT_MODE_ACTIVITY_ONLY
    )
    for number in range(count):
        member = rng.choice(members)
        days = rng.uniform(1, 716)
        if abs(days - 365) < 14:
            days += 28
        at = now - timedelta(days=days)
        amount = Decimal(rng.randrange(1_000, 300_000)).scaleb(-2)
        if at > edge:
            in_window[member] = in_window.get(member, Decimal(0)) + amount
        chunk.orders.append(
            identity_events.ImportedOrder(
                member_id=member,
                order_id=f"M{number:09d}",
                amount=Money(currency_code="CNY", amount=f"{amount:.2f}"),
                occurred_at=timestamp(at),
            )
        )
        if len(chunk.orders) == CHUNK or number == count - 1:
            chunk.imported_at.CopyFrom(timestamp(now))
            payloads.append(chunk.SerializeToString())
            del chunk.orders[:]
    found = Chunks(payloads, count, len(members), in_window)
    _progress(
        f"{count:,} orders over {len(members):,} members in {len(payloads):,} chunks made in "
        f"{time.perf_counter() - started:.1f}s ({sum(map(len, payloads)) / 1e6:.0f} MB)"
    )
    ctx.shared[SHARED] = found
    return found


def _cpu_per_order(since: float, chunks: Chunks) -> float:
    """This process's CPU time (all its threads) since `since`, in µs an order: what the
    Python side costs, less sensitive than orders/s to other work on the machine."""
    return round((time.process_time() - since) / chunks.orders * 1e6, 2)


async def _migrated(settings: Settings, name: str) -> dict[str, Any]:
    await db.ensure_database(settings.server_url, settings.database_for(name))
    url = settings.service_database_url(name)
    assert TIERS_SPEC.migrations is not None
    await upgrade_database(url, TIERS_SPEC.migrations)
    return asyncpg_params(url)


async def _recorded(conn: asyncpg.Connection, chunks: Chunks) -> dict[str, Any]:
    """Every order recorded once, as activity without points; answers the figures."""
    claims = await conn.fetchval("SELECT count(*) FROM activity_orders")
    rows = await conn.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT member_id) AS members, sum(points) AS points, "
        "sum(visits) AS visits FROM activity WHERE event_id LIKE 'order:%'"
    )
    assert rows is not None
    if not claims == rows["n"] == rows["visits"] == chunks.orders or rows["points"]:
        raise AssertionError(
            f"{claims:,} claims, {rows['n']:,} activity rows ({rows['visits']} visits, "
            f"{rows['points']} points) for {chunks.orders:,} orders"
        )
    return {"members_with_orders": rows["members"]}


# --- the ceiling -------------------------------------------------------------------------------

_MARK = """
INSERT INTO upgrades_due (member_id, marked_at)
SELECT m, $2::timestamptz FROM unnest($1::uuid[]) AS m
"""


@scenario("raw-order-activity")
async def raw_order_activity(ctx: BenchContext) -> Measurement:
    """One bare process: each chunk parsed, its new orders COPYed into activity_orders and
    activity and its members marked for judgement, a transaction a chunk, one connection."""
    chunks = _chunks(ctx)
    connect = await _migrated(ctx.settings(), "raw_orders")
    conn = await asyncpg.connect(**connect)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for payload in chunks.payloads:
            event = identity_events.LegacyOrdersImported.FromString(payload)
            unit, name = event.unit, event.order_import
            orders = [
                (
                    o.member_id,
                    o.order_id,
                    o.occurred_at.ToDatetime(tzinfo=UTC),
                    Decimal(o.amount.amount),
                )
                for o in event.orders
            ]
            now = datetime.now(UTC)
            edge = now - timedelta(days=365)
            async with conn.transaction():
                fresh = orders  # all new: the service's COPY goes through as here
                events_ids = [f"order:{unit}/{o[1]}" for o in fresh]
                await conn.copy_records_to_table(
                    "activity_orders",
                    columns=ORDER_COLUMNS,
                    records=[(unit, o[1], e, name) for o, e in zip(fresh, events_ids, strict=True)],
                )
                await conn.copy_records_to_table(
                    "activity",
                    columns=ACTIVITY_COLUMNS,
                    records=[
                        (o[0], e, o[2], unit, o[3], 0, 1, None)
                        for o, e in zip(fresh, events_ids, strict=True)
                    ],
                )
                await conn.execute(_MARK, sorted({o[0] for o in fresh if o[2] >= edge}), now)
        seconds = time.perf_counter() - started
        extra = {"cpu_us_per_order": _cpu_per_order(cpu, chunks)}
        extra.update(await _recorded(conn, chunks))
    finally:
        await conn.close()
    return Measurement(
        count=chunks.orders,
        seconds=seconds,
        concurrency=1,
        unit="orders",
        extra={
            **extra,
            "orders": chunks.orders,
            "members": chunks.members,
            "chunks": len(chunks.payloads),
            "chunk": CHUNK,
        },
    )


# --- the service -------------------------------------------------------------------------------


async def _publish_ladder(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await tiers_service_pb2_grpc.TiersServiceStub(channel).UpdateLadder(
            tiers_pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id="bench-ladder-v1"),
            metadata=ADMIN.metadata(),
            timeout=30.0,
        )


async def _publish(js: Any, subject: str, chunks: Chunks) -> float:
    """Every chunk, acks awaited as they come (nats-py's window); seconds it took."""
    started = time.perf_counter()
    acks = []
    for number, payload in enumerate(chunks.payloads):
        event_id = str(uuid.UUID(int=number, version=4))
        headers = {
            MSG_ID_HEADER: event_id,
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: EVENT_TYPE,
        }
        acks.append(await js.publish_async(subject, payload, headers=headers))
    await asyncio.gather(*acks)
    return time.perf_counter() - started


async def _committed(conn: asyncpg.Connection, total: int) -> None:
    """Until the consumer has committed `total` chunks (its inbox rows)."""
    done, last_change, seen = 0, time.perf_counter(), 0
    while done < total:
        await asyncio.sleep(POLL_SECONDS)
        done = await conn.fetchval("SELECT count(*) FROM kit_inbox WHERE consumer = 'tiers-orders'")
        if done != seen:
            seen, last_change = done, time.perf_counter()
        elif time.perf_counter() - last_change > STALL_SECONDS:
            raise AssertionError(f"{done} of {total} chunks after {STALL_SECONDS:.0f}s without one")


async def _judged(conn: asyncpg.Connection) -> None:
    """Until the upgrade job has judged every marked member."""
    started = time.perf_counter()
    while await conn.fetchval("SELECT count(*) FROM upgrades_due"):
        if time.perf_counter() - started > STALL_SECONDS:
            raise AssertionError(f"members still to judge after {STALL_SECONDS:.0f}s")
        await asyncio.sleep(POLL_SECONDS)


@scenario("tiers-order-activity", ceiling="raw-order-activity")
async def tiers_order_activity(ctx: BenchContext) -> Measurement:
    """LegacyOrdersImported chunks published to JetStream, recorded by the tiers service's
    consumer as activity (upgrades judged, TierChanged through the outbox): orders/s from the
    first publish to the last chunk committed."""
    chunks = _chunks(ctx)
    settings = ctx.settings(
        database_prefix=f"{ctx.run_id}_orders_", event_namespace=f"{ctx.run_id}_orders"
    )
    service = await start_service(TIERS_SPEC, settings, port=0)
    client = await events.connect(ctx.infra.nats_url, "loyalty-bench-orders")
    conn: asyncpg.Connection | None = None
    try:
        await service.wait_until_serving()
        await _publish_ladder(service.target)
        conn = await asyncpg.connect(**asyncpg_params(settings.service_database_url("tiers")))
        js = client.jetstream(publish_async_max_pending=4000)
        await events.ensure_stream(js, settings.event_namespace, "identity")
        subject = events.subject_of(EVENT_TYPE, settings.event_namespace)
        started, cpu = time.perf_counter(), time.process_time()
        publishing = asyncio.create_task(_publish(js, subject, chunks))
        await _committed(conn, len(chunks.payloads))
        seconds = time.perf_counter() - started
        cpu_us_per_order = _cpu_per_order(cpu, chunks)
        publish_seconds = await publishing
        await _judged(conn)
        judged_seconds = time.perf_counter() - started
        extra = await _recorded(conn, chunks)
        extra.update(await _tiers_as_expected(conn, chunks))
        extra["judged_seconds"] = round(judged_seconds, 2)
        extra["cpu_us_per_order"] = cpu_us_per_order
    finally:
        if conn is not None:
            await conn.close()
        await client.close()
        await service.stop(grace=0.5)
    return Measurement(
        count=chunks.orders,
        seconds=seconds,
        concurrency=1,
        unit="orders",
        extra={
            **extra,
            "orders": chunks.orders,
            "members": chunks.members,
            "chunks": len(chunks.payloads),
            "chunk": CHUNK,
            "publish_seconds": round(publish_seconds, 2),
        },
    )


async def _tiers_as_expected(conn: asyncpg.Connection, chunks: Chunks) -> dict[str, Any]:
    """Each member at the tier its window's spend supports; every rise a `qualified` row."""
    rows = await conn.fetch("SELECT tier, count(*) AS n FROM member_tiers GROUP BY tier")
    tiers = Counter({r["tier"]: int(r["n"]) for r in rows})
    expected = chunks.expected_tiers()
    expected["basic"] += sum(tiers.values()) - sum(expected.values())
    if +tiers != +expected:
        raise AssertionError(f"tiers {dict(tiers)}, expected {dict(expected)}")
    upgrades = await conn.fetchval("SELECT count(*) FROM tier_history WHERE reason = 'qualified'")
    if upgrades < sum(n for tier, n in tiers.items() if tier != "basic"):
        raise AssertionError(f"{upgrades} upgrades for {dict(tiers)}")
    return {"tiers": dict(tiers), "upgrades": int(upgrades)}
