"""Idempotent JetStream consumers: each event is handled once per consumer, whatever the bus does.

JetStream delivers at least once (redelivery after a crash or a missed ack). The consumer records
the event id in its service's inbox table in the same transaction as the handler's changes, so a
redelivered event is acknowledged without being handled again, and a handler that fails leaves no
trace and is retried later (nak with a delay). While the database is unavailable the batch is
given back with one warning and the consumer pauses before fetching again.

Handlers are registered per event type: `consumer.on(PointsEarned, handle_points_earned)`; they
receive a unit of work (commit is done for them) and the decoded message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError
from sqlalchemy.dialects.postgresql import insert as pg_insert

from loyalty_kit.db import database_unavailable
from loyalty_kit.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    MSG_ID_HEADER,
    EventMeta,
    ensure_stream,
    subject_of,
)
from loyalty_kit.logs import get_logger
from loyalty_kit.tables import inbox
from loyalty_kit.uow import UnitOfWork

log = get_logger("loyalty.inbox")

E = TypeVar("E", bound=Message)
Handler = Callable[[UnitOfWork, Any, EventMeta], Awaitable[None]]


class EventConsumer:
    """A durable pull consumer on another service's stream, de-duplicated by an inbox table."""

    def __init__(
        self,
        name: str,
        source_service: str,
        uow_factory: Callable[[], UnitOfWork],
        *,
        namespace: str = "loyalty",
        batch: int = 100,
        retry_delay_seconds: float = 1.0,
    ) -> None:
        self.name = name
        self.source_service = source_service
        self.uow_factory = uow_factory
        self.namespace = namespace
        self.batch = batch
        self.retry_delay_seconds = retry_delay_seconds
        self._handlers: dict[str, tuple[type[Message], Handler]] = {}
        self.handled = 0
        self.duplicates = 0

    def on(
        self, event_type: type[E], handler: Callable[[Any, E, EventMeta], Awaitable[None]]
    ) -> None:
        self._handlers[event_type.DESCRIPTOR.full_name] = (event_type, handler)  # type: ignore[assignment]

    @property
    def durable(self) -> str:
        return f"{self.name}".replace(".", "_")

    async def subscribe(self, js: JetStreamContext) -> Any:
        stream = await ensure_stream(js, self.namespace, self.source_service)
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subjects=[subject_of(t, self.namespace) for t in sorted(self._handlers)],
            ack_wait=30,
            max_ack_pending=1000,
        )
        await js.add_consumer(stream, config)
        return await js.pull_subscribe_bind(self.durable, stream)

    async def handle(self, msg: Msg) -> None:
        headers = msg.headers or {}
        event_id = headers.get(EVENT_ID_HEADER) or headers.get(MSG_ID_HEADER)
        event_type = headers.get(EVENT_TYPE_HEADER, "")
        registered = self._handlers.get(event_type)
        if event_id is None or registered is None:
            log.warning("event without id or handler; dropped", subject=msg.subject)
            await msg.term()
            return
        message_type, handler = registered
        event = message_type()
        event.ParseFromString(msg.data)
        meta = EventMeta(event_id=event_id, event_type=event_type, subject=msg.subject)
        async with self.uow_factory() as uow:
            first = await uow.session.execute(
                pg_insert(inbox)
                .values(consumer=self.name, event_id=event_id)
                .on_conflict_do_nothing()
                .returning(inbox.c.event_id)
            )
            if first.first() is None:
                self.duplicates += 1
            else:
                await handler(uow, event, meta)
                await uow.commit()
                self.handled += 1
        await msg.ack()

    async def _retry_later(self, messages: list[Msg]) -> None:
        log.warning(
            "database unavailable; events will be retried", consumer=self.name, events=len(messages)
        )
        for msg in messages:
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.retry_delay_seconds)
        await asyncio.sleep(self.retry_delay_seconds)

    async def run(self, js: JetStreamContext) -> None:
        sub = await self.subscribe(js)
        try:
            while True:
                try:
                    messages = await sub.fetch(self.batch, timeout=1.0)
                except (FetchTimeoutError, TimeoutError):
                    continue
                for index, msg in enumerate(messages):
                    try:
                        await self.handle(msg)
                    except asyncio.CancelledError:
                        raise
                    except Exception as error:
                        if database_unavailable(error):
                            # One warning for the batch: it is all given back and retried.
                            await self._retry_later(messages[index:])
                            break
                        log.exception("event handler failed; will retry", subject=msg.subject)
                        with contextlib.suppress(Exception):
                            await msg.nak(delay=self.retry_delay_seconds)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
