"""Idempotent consumers: an event is handled once per consumer, whatever JetStream redelivers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from loyalty_kit import db, events
from loyalty_kit.events import EventMeta
from loyalty_kit.inbox import EventConsumer
from loyalty_kit.outbox import OutboxRelay
from loyalty_kit.settings import Settings
from loyalty_kit.uow import UnitOfWork
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.kit.dynamic_events import event_type

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def make_ledger(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE seen (event_id text, n bigint)"))


async def ledger(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT event_id, n FROM seen ORDER BY n"))
        return [(r.event_id, r.n) for r in rows]


def consumer_on(
    engine: AsyncEngine, settings: Settings, service: str, fail_first: int = 0
) -> EventConsumer:
    sessions = db.session_factory(engine)
    consumer = EventConsumer(
        f"ledger-{service}",
        service,
        lambda: UnitOfWork(sessions, settings.event_namespace),
        namespace=settings.event_namespace,
        retry_delay_seconds=0.1,
    )
    failures = {"left": fail_first}

    async def record(uow: UnitOfWork, event: Any, meta: EventMeta) -> None:
        await uow.session.execute(
            text("INSERT INTO seen (event_id, n) VALUES (:id, :n)"),
            {"id": meta.event_id, "n": event.n},
        )
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("handler failed after writing")  # its write must vanish

    consumer.on(event_type(service), record)
    return consumer


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    async def loop() -> None:
        while not await predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), timeout)


async def test_redelivered_event_is_handled_once(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    Happened = event_type(stream_service)
    subject = events.event_subject(Happened(), settings.event_namespace)
    event_id = str(uuid.uuid4())
    headers = {
        events.EVENT_ID_HEADER: event_id,
        events.EVENT_TYPE_HEADER: Happened.DESCRIPTOR.full_name,
    }
    # The same event twice in the stream: what a re-publish after the duplicate window, or a
    # redelivery after a lost ack, looks like to a consumer.
    for _ in range(2):
        await js.publish(subject, Happened(n=7).SerializeToString(), headers=headers)
    await js.publish(
        subject,
        Happened(n=8).SerializeToString(),
        headers={**headers, events.EVENT_ID_HEADER: str(uuid.uuid4())},
    )
    consumer = consumer_on(kit_db, settings, stream_service)
    running = asyncio.create_task(consumer.run(js))
    try:
        await wait_for(lambda: _done(consumer, handled=2, duplicates=1))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert [n for _, n in await ledger(kit_db)] == [7, 8]


async def _done(consumer: EventConsumer, handled: int, duplicates: int) -> bool:
    return consumer.handled >= handled and consumer.duplicates >= duplicates


async def test_failed_handler_leaves_no_trace_and_is_retried(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    async with UnitOfWork(db.session_factory(kit_db), settings.event_namespace) as uow:
        for n in range(5):
            await uow.outbox.add(event_type(stream_service)(n=n))
        await uow.commit()
    await OutboxRelay(kit_db, js).publish_pending()
    consumer = consumer_on(kit_db, settings, stream_service, fail_first=2)
    running = asyncio.create_task(consumer.run(js))
    try:
        await wait_for(lambda: _done(consumer, handled=5, duplicates=0))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert sorted(n for _, n in await ledger(kit_db)) == [0, 1, 2, 3, 4]


async def test_consumer_resumes_where_it_left_off_after_a_restart(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    sessions = db.session_factory(kit_db)

    async def publish(numbers: range) -> None:
        async with UnitOfWork(sessions, settings.event_namespace) as uow:
            for n in numbers:
                await uow.outbox.add(event_type(stream_service)(n=n))
            await uow.commit()
        await OutboxRelay(kit_db, js).publish_pending()

    await publish(range(3))
    first = consumer_on(kit_db, settings, stream_service)
    running = asyncio.create_task(first.run(js))
    await wait_for(lambda: _done(first, handled=3, duplicates=0))
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)

    await publish(range(3, 6))  # arrives while no consumer runs
    second = consumer_on(kit_db, settings, stream_service)
    running = asyncio.create_task(second.run(js))
    try:
        await wait_for(lambda: _done(second, handled=3, duplicates=0))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert [n for _, n in await ledger(kit_db)] == [0, 1, 2, 3, 4, 5]


async def test_a_consumer_of_independent_events_handles_several_at_once_each_once(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    sessions = db.session_factory(kit_db)
    async with UnitOfWork(sessions, settings.event_namespace) as uow:
        for n in range(12):
            await uow.outbox.add(event_type(stream_service)(n=n))
        await uow.commit()
    await OutboxRelay(kit_db, js).publish_pending()
    consumer = EventConsumer(
        f"together-{stream_service}",
        stream_service,
        lambda: UnitOfWork(sessions, settings.event_namespace),
        namespace=settings.event_namespace,
        concurrency=3,
    )
    in_flight, most = 0, 0

    async def record(uow: UnitOfWork, event: Any, meta: EventMeta) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)  # the database at work: the next event meanwhile
        await uow.session.execute(
            text("INSERT INTO seen (event_id, n) VALUES (:id, :n)"),
            {"id": meta.event_id, "n": event.n},
        )
        in_flight -= 1

    consumer.on(event_type(stream_service), record)
    running = asyncio.create_task(consumer.run(js))
    try:
        await wait_for(lambda: _done(consumer, handled=12, duplicates=0))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert sorted(n for _, n in await ledger(kit_db)) == list(range(12))
    assert most == 3
