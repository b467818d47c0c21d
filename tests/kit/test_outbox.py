"""Outbox + relay: what commits is published exactly once; what rolls back is never published."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from loyalty_kit import db, events
from loyalty_kit.outbox import OutboxRelay
from loyalty_kit.settings import Settings
from loyalty_kit.tables import outbox
from loyalty_kit.uow import UnitOfWork
from nats.js import JetStreamContext
from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.kit.dynamic_events import event_type

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def write_events(engine: AsyncEngine, settings: Settings, service: str, count: int) -> None:
    Happened = event_type(service)
    async with UnitOfWork(db.session_factory(engine), settings.event_namespace) as uow:
        for n in range(count):
            await uow.outbox.add(Happened(note="earned", n=n))
        await uow.commit()


async def stream_messages(js: JetStreamContext, settings: Settings, service: str) -> list[Any]:
    """Every message in the service's stream, read by an ephemeral consumer."""
    stream = events.stream_name(settings.event_namespace, service)
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    sub = await js.pull_subscribe(f"{settings.event_namespace}.{service}.v1.>", stream=stream)
    found: list[Any] = []
    while len(found) < info.state.messages:
        found += await sub.fetch(info.state.messages - len(found), timeout=5)
    await sub.unsubscribe()
    return found


class CrashesBeforeMarking(OutboxRelay):
    """A relay that dies after JetStream acknowledged a batch but before marking it published."""

    crashes_left = 1

    async def _mark(self, conn: AsyncConnection, rows: Sequence[Row[Any]]) -> None:
        if self.crashes_left:
            self.crashes_left -= 1
            raise ConnectionResetError("relay killed between publish and mark")
        await super()._mark(conn, rows)


async def test_committed_events_arrive_once_even_when_the_relay_dies_mid_way(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await write_events(kit_db, settings, stream_service, 25)
    crashing = CrashesBeforeMarking(kit_db, js, batch_size=10)
    with pytest.raises(ConnectionResetError):
        await crashing.publish_pending()
    # A new relay (the restarted process) publishes everything still marked unpublished,
    # including the 10 that JetStream already has.
    assert await OutboxRelay(kit_db, js, batch_size=10).publish_pending() == 25

    received = await stream_messages(js, settings, stream_service)
    Happened = event_type(stream_service)
    numbers = [Happened.FromString(m.data).n for m in received]  # type: ignore[attr-defined]
    assert numbers == list(range(25))  # each once, in the order written
    ids = {m.headers[events.EVENT_ID_HEADER] for m in received}
    assert len(ids) == 25
    async with kit_db.connect() as conn:
        pending = await conn.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        )
    assert pending == 0


async def test_rolled_back_transaction_publishes_nothing(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    Happened = event_type(stream_service)
    async with UnitOfWork(db.session_factory(kit_db), settings.event_namespace) as uow:
        await uow.outbox.add(Happened(note="will not happen"))
        # leaving without commit rolls back
    with pytest.raises(RuntimeError):
        async with UnitOfWork(db.session_factory(kit_db), settings.event_namespace) as uow:
            await uow.outbox.add(Happened(note="fails half-way"))
            raise RuntimeError("the state change failed")
    assert await OutboxRelay(kit_db, js).publish_pending() == 0
    assert await stream_messages(js, settings, stream_service) == []


async def test_relay_wakes_on_commit_without_waiting_for_its_poll(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    relay = OutboxRelay(kit_db, js, poll_seconds=60)
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.3)  # the relay is now waiting on LISTEN
        await write_events(kit_db, settings, stream_service, 3)
        for _ in range(100):
            if relay.published == 3:
                break
            await asyncio.sleep(0.05)
        assert relay.published == 3
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_two_relays_on_one_database_publish_each_event_once(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await write_events(kit_db, settings, stream_service, 300)
    replicas = [OutboxRelay(kit_db, js, batch_size=20) for _ in range(2)]
    for _ in range(10):
        await asyncio.gather(*(r.publish_pending() for r in replicas))
    assert sum(r.published for r in replicas) == 300
    assert len(await stream_messages(js, settings, stream_service)) == 300
