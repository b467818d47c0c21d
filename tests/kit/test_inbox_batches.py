"""A consumer's batch mode: a fetched batch in one transaction (one inbox statement, the batch
scope around the handlers, one commit), each event still handled once; a poison event makes the
batch fall back to one event at a time (the others go through, it is parked); control events
split the batch and keep their place in the order. On the real bus and database."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from loyalty_kit import db, events
from loyalty_kit.events import EventMeta
from loyalty_kit.inbox import Batching, DeliveryPolicy, EventConsumer
from loyalty_kit.settings import Settings
from loyalty_kit.tables import inbox
from loyalty_kit.uow import UnitOfWork
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.kit.dynamic_events import event_type
from tests.kit.test_inbox import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def make_log(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE handled (seq bigserial, n bigint, kind text, batch int)")
        )


async def log_of(engine: AsyncEngine) -> list[tuple[int, str, int | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT n, kind, batch FROM handled ORDER BY seq"))
        return [(r.n, r.kind, r.batch) for r in rows]


class Scopes:
    """A batch scope that numbers the batches and writes a row for each at its end (the work a
    service defers to the batch's end), in the batch's transaction."""

    def __init__(self) -> None:
        self.entered = 0
        self.current: int | None = None

    @contextlib.asynccontextmanager
    async def __call__(self, uow: UnitOfWork) -> AsyncIterator[None]:
        self.entered += 1
        self.current = self.entered
        try:
            yield
        finally:
            self.current = None
        await uow.session.execute(
            text("INSERT INTO handled (n, kind, batch) VALUES (-1, 'end', :b)"),
            {"b": self.entered},
        )


async def publish(js: JetStreamContext, settings: Settings, event: Any, event_id: str = "") -> str:
    event_id = event_id or str(uuid.uuid4())
    await js.publish(
        events.event_subject(event, settings.event_namespace),
        event.SerializeToString(),
        headers={
            events.MSG_ID_HEADER: str(uuid.uuid4()),  # the stream keeps every copy
            events.EVENT_ID_HEADER: event_id,
            events.EVENT_TYPE_HEADER: event.DESCRIPTOR.full_name,
        },
    )
    return event_id


def batched_consumer(
    engine: AsyncEngine,
    settings: Settings,
    service: str,
    scopes: Scopes,
    *,
    alone: frozenset[str] = frozenset(),
    fails_on: int | None = None,
) -> EventConsumer:
    sessions = db.session_factory(engine)
    consumer = EventConsumer(
        f"batched-{service}",
        service,
        lambda: UnitOfWork(sessions, settings.event_namespace),
        namespace=settings.event_namespace,
        retry_delay_seconds=0.1,
        policy=DeliveryPolicy(max_deliver=2, backoff_seconds=0.05, backoff_max_seconds=0.1),
        batching=Batching(scopes, alone),
    )

    def recorder(kind: str) -> Any:
        async def record(uow: UnitOfWork, event: Any, meta: EventMeta) -> None:
            await uow.session.execute(
                text("INSERT INTO handled (n, kind, batch) VALUES (:n, :kind, :b)"),
                {"n": event.n, "kind": kind, "b": scopes.current},
            )
            if event.n == fails_on:
                raise RuntimeError("a poison event")  # its write, and its batch's, must vanish

        return record

    consumer.on(event_type(service), recorder("event"))
    consumer.on(event_type(service, "Control"), recorder("control"))
    return consumer


async def running(consumer: EventConsumer, js: JetStreamContext, until: Any) -> None:
    task = asyncio.create_task(consumer.run(js))
    try:
        await wait_for(until)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_fetched_batch_is_one_transaction_and_each_event_counts_once(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_log(kit_db)
    Happened = event_type(stream_service)
    ids = [await publish(js, settings, Happened(n=n)) for n in range(10)]
    await publish(js, settings, Happened(n=3), ids[3])  # delivered twice in the same batch
    # One handled before (its inbox row is there): a redelivery after a lost ack.
    seen_before = await publish(js, settings, Happened(n=10))
    async with kit_db.begin() as conn:
        await conn.execute(
            inbox.insert().values(consumer=f"batched-{stream_service}", event_id=seen_before)
        )
    scopes = Scopes()
    consumer = batched_consumer(kit_db, settings, stream_service, scopes)

    async def done() -> bool:
        return consumer.handled + consumer.duplicates >= 12

    await running(consumer, js, done)
    assert (consumer.handled, consumer.duplicates) == (10, 2)
    # All fetched at once: one scope, one transaction, the stream's order; the scope's own
    # write at the end of the batch.
    assert (scopes.entered, consumer.batches, consumer.batches_split) == (1, 1, 0)
    assert await log_of(kit_db) == [(n, "event", 1) for n in range(10)] + [(-1, "end", 1)]


async def test_a_poison_event_makes_its_batch_go_one_at_a_time_and_is_parked(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_log(kit_db)
    Happened = event_type(stream_service)
    for n in range(6):
        await publish(js, settings, Happened(n=n))
    scopes = Scopes()
    consumer = batched_consumer(kit_db, settings, stream_service, scopes, fails_on=3)

    async def done() -> bool:
        return consumer.handled >= 5 and consumer.dead_lettered >= 1

    await running(consumer, js, done)
    assert consumer.batches_split >= 1
    # The batch's writes vanished with it; one at a time, each good event once, without scope.
    assert await log_of(kit_db) == [(n, "event", None) for n in (0, 1, 2, 4, 5)]
    parked = await js.get_last_msg(
        events.stream_name(settings.event_namespace, events.DEAD_LETTERS),
        events.dead_letter_subject(settings.event_namespace, consumer.name),
    )
    assert parked.data == Happened(n=3).SerializeToString()


async def test_control_events_split_a_batch_and_keep_their_place(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_log(kit_db)
    Happened = event_type(stream_service)
    Control = event_type(stream_service, "Control")
    for n in range(3):
        await publish(js, settings, Happened(n=n))
    await publish(js, settings, Control(n=3))
    for n in range(4, 6):
        await publish(js, settings, Happened(n=n))
    scopes = Scopes()
    consumer = batched_consumer(
        kit_db,
        settings,
        stream_service,
        scopes,
        alone=frozenset({Control.DESCRIPTOR.full_name}),
    )

    async def done() -> bool:
        return consumer.handled >= 6

    await running(consumer, js, done)
    assert await log_of(kit_db) == [
        (0, "event", 1),
        (1, "event", 1),
        (2, "event", 1),
        (-1, "end", 1),
        (3, "control", None),  # its own transaction, between the two batches
        (4, "event", 2),
        (5, "event", 2),
        (-1, "end", 2),
    ]
