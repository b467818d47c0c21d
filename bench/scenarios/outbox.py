"""The transactional outbox relayed to JetStream, against publishing to JetStream directly.

Both publish `--events` StringValue events (default 20,000) with the same subject, payloads and
headers (a fresh Nats-Msg-Id each) into one file-backed stream of the run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

from google.protobuf import wrappers_pb2
from loyalty_kit import db, events, migrations
from loyalty_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MSG_ID_HEADER
from loyalty_kit.outbox import Outbox, OutboxRelay
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.context import BenchContext
from bench.registry import Measurement, scenario

KIT_MIGRATIONS = "loyalty_points:migrations"  # its first revision is the kit's tables
EVENT_TYPE = wrappers_pb2.StringValue.DESCRIPTOR.full_name
EVENTS_PER_TRANSACTION = 100
WARMUP_EVENTS = 400
MAX_PENDING_ACKS = 4000  # nats-py's default publish_async window, set explicitly


def _event(number: int) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=f"member m-{number:06d} earned 10 points")


async def _connect(ctx: BenchContext) -> tuple[NATS, JetStreamContext, str]:
    """A NATS connection, its JetStream context and the run's stream for these events."""
    client = await events.connect(ctx.infra.nats_url, "loyalty-bench")
    js = client.jetstream(publish_async_max_pending=MAX_PENDING_ACKS)
    config = StreamConfig(
        name=f"{ctx.namespace}_BENCH".upper(),
        subjects=[events.subject_of("google.protobuf.x", ctx.namespace).rsplit(".", 1)[0] + ".>"],
        storage=StorageType.FILE,
        duplicate_window=events.DUPLICATE_WINDOW_SECONDS,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
    assert config.name is not None
    return client, js, config.name


async def _stored(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.messages)


@scenario("raw-jetstream-publish")
async def raw_jetstream_publish(ctx: BenchContext) -> Measurement:
    """Ceiling: nats-py js.publish_async of every event, then every ack awaited."""
    client, js, stream = await _connect(ctx)
    subject = events.event_subject(_event(0), ctx.namespace)

    def prepared(count: int) -> list[tuple[bytes, dict[str, str]]]:
        out = []
        for number in range(count):
            event_id = str(uuid.uuid4())
            headers = {
                MSG_ID_HEADER: event_id,
                EVENT_ID_HEADER: event_id,
                EVENT_TYPE_HEADER: EVENT_TYPE,
            }
            out.append((_event(number).SerializeToString(deterministic=True), headers))
        return out

    async def publish(messages: list[tuple[bytes, dict[str, str]]]) -> None:
        acks = [
            await js.publish_async(subject, payload, headers=headers)
            for payload, headers in messages
        ]
        await asyncio.gather(*acks)

    try:
        await publish(prepared(WARMUP_EVENTS))
        messages = prepared(ctx.events)
        before = await _stored(js, stream)
        started = time.perf_counter()
        await publish(messages)
        elapsed = time.perf_counter() - started
        stored = await _stored(js, stream) - before
        if stored != ctx.events:
            raise AssertionError(f"published {ctx.events} but the stream holds {stored} more")
        return Measurement(
            count=ctx.events,
            seconds=elapsed,
            concurrency=MAX_PENDING_ACKS,
            unit="events",
            extra={"stream": stream, "payload_bytes": len(messages[0][0])},
        )
    finally:
        await client.close()


async def _write(
    sessions: async_sessionmaker[AsyncSession], namespace: str, count: int, writers: int
) -> float:
    """Add `count` events through the kit's Outbox, 100 per transaction; seconds taken."""
    chunks: Iterator[range] = iter(
        range(start, min(start + EVENTS_PER_TRANSACTION, count))
        for start in range(0, count, EVENTS_PER_TRANSACTION)
    )

    async def writer() -> None:
        for chunk in chunks:  # shared: each transaction's chunk is taken once
            async with sessions() as session, session.begin():
                outbox = Outbox(session, namespace)
                for number in chunk:
                    await outbox.add(_event(number))

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(writers):
            group.create_task(writer())
    return time.perf_counter() - started


async def _unpublished(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM kit_outbox WHERE published_at IS NULL")
        )
    return int(count or 0)


@scenario("kit-outbox-relay", ceiling="raw-jetstream-publish")
async def kit_outbox_relay(ctx: BenchContext) -> Measurement:
    """OutboxRelay.publish_pending() of events written through Outbox (timed: the relay only).

    The events are written first (untimed for the result; their rate is kept in `extra`) into a
    database migrated with the points service's migrations, whose first revision is the kit's
    tables; the relay then publishes them in batches of `outbox_batch_size`, as a service does.
    """
    settings = ctx.settings()
    engine = db.create_engine(await ctx.database("outbox"), settings.database_pool_size)
    client: NATS | None = None
    try:
        await migrations.upgrade(engine, KIT_MIGRATIONS)
        sessions = db.session_factory(engine)
        client, js, stream = await _connect(ctx)
        relay = OutboxRelay(
            engine,
            js,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
        )
        await _write(sessions, ctx.namespace, WARMUP_EVENTS, writers=1)
        await relay.publish_pending()

        writers = settings.database_pool_size
        write_seconds = await _write(sessions, ctx.namespace, ctx.events, writers)
        before = await _stored(js, stream)
        started = time.perf_counter()
        published = await relay.publish_pending()
        elapsed = time.perf_counter() - started
        stored = await _stored(js, stream) - before
        left = await _unpublished(engine)
        if published != ctx.events or stored != ctx.events or left:
            raise AssertionError(
                f"wrote {ctx.events}, relay published {published}, stream got {stored}, "
                f"{left} left unpublished"
            )
        return Measurement(
            count=published,
            seconds=elapsed,
            concurrency=settings.outbox_batch_size,
            unit="events",
            extra={
                "stream": stream,
                "batch_size": settings.outbox_batch_size,
                "write_seconds": round(write_seconds, 3),
                "write_events_per_s": round(ctx.events / write_seconds, 1),
                "write_writers": writers,
                "write_events_per_transaction": EVENTS_PER_TRANSACTION,
            },
        )
    finally:
        if client is not None:
            await client.close()
        await engine.dispose()
