"""Idempotent JetStream consumers: each event is handled once per consumer, whatever the bus does.

JetStream delivers at least once (redelivery after a crash or a missed ack). The consumer records
the event id in its service's inbox table in the same transaction as the handler's changes, so a
redelivered event is acknowledged without being handled again, and a handler that fails leaves no
trace and is retried later (nak with a delay that doubles per attempt). While the database or a
peer is unavailable the batch is given back with one warning and the consumer pauses before fetching
again; such retries are not counted against the event.

Poison events: an event whose handler keeps failing for any other reason is parked after
`max_deliver` attempts in the dead-letter stream (its bytes, its headers, the consumer, the reason,
the attempts), then terminated on its own stream so the consumer carries on with the next events.
An event that cannot be decoded, or that has no id or no type, is parked at once; one of a type
the consumer does not follow (a server that ignores the subject filters) is acknowledged. Parked
events are listed and replayed with `loyalty-events dead-letters` (loyalty_kit.deadletters).

Handlers are registered per event type: `consumer.on(PointsEarned, handle_points_earned)`; they
receive a unit of work (commit is done for them) and the decoded message. A consumer handles
one event at a time, in the stream's order; one whose events are independent of each other
(the chunks of an import) may handle several at once (`concurrency`), each in its own
transaction, so the database works on one while Python reads the next. A service declares its
consumers as a handler table (`Subscription`s in its entrypoints/consumers.py), which
`consumers_of` turns into consumers.

Batch mode (opt-in per consumer, `Batching`): a fetched batch is handled in ONE transaction:
its event ids de-duplicated against the inbox in one statement, the handlers of the new ones
called in the stream's order, a `scope` around them (where the service defers work to do once
per batch, set-based, before the commit), one commit, then the batch acknowledged. Events of the
`alone` types (merges, erasures: control events) split the batch: each is handled in its own
transaction, in its place in the order. A batch that fails for a reason other than an outage is
handled again at once one event at a time, as a consumer without batch mode would: the good
events go through and a poison one takes the usual retry and dead-letter path. An outage gives
the whole batch back.

Each event is handled in the context it carried from the work that wrote it: its request id,
and a CONSUMER span in that work's trace (`loyalty_kit.correlation.consuming`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError
from sqlalchemy import ARRAY, Text, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from loyalty_kit import events, metrics
from loyalty_kit.correlation import consuming, failed_in
from loyalty_kit.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    MSG_ID_HEADER,
    EventMeta,
    StreamLimits,
    ensure_stream,
    subject_of,
)
from loyalty_kit.jobs import log_round_failed, outage
from loyalty_kit.logs import get_logger, scrub
from loyalty_kit.settings import Settings
from loyalty_kit.tables import inbox
from loyalty_kit.uow import UnitOfWork

log = get_logger("loyalty.inbox")

E = TypeVar("E", bound=Message)
Handler = Callable[[UnitOfWork, Any, EventMeta], Awaitable[None]]
REASON_LIMIT = 500  # characters of a failure's reason kept with a parked event


@dataclass(frozen=True)
class DeliveryPolicy:
    """How a consumer retries a failing event, when it gives up, and the streams' limits."""

    max_deliver: int = 5
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    streams: StreamLimits = field(default_factory=StreamLimits)
    dead_letters: StreamLimits = field(default_factory=lambda: StreamLimits(30 * 86400.0, -1))

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            settings.event_max_deliver,
            settings.event_retry_backoff_seconds,
            settings.event_retry_backoff_max_seconds,
            StreamLimits.of_events(settings),
            StreamLimits.of_dead_letters(settings),
        )

    def delay(self, attempt: int) -> float:
        """Seconds before retrying after the `attempt`-th failure (1, 2, 4, ... capped)."""
        return float(min(self.backoff_seconds * 2 ** max(attempt - 1, 0), self.backoff_max_seconds))


class Unhandleable(Exception):
    """An event this consumer can never handle as it is (no id, no handler, undecodable)."""


BatchScope = Callable[[UnitOfWork], AbstractAsyncContextManager[object]]


@contextlib.asynccontextmanager
async def _no_scope(_uow: UnitOfWork) -> AsyncIterator[None]:
    yield


@dataclass(frozen=True)
class Batching:
    """A consumer's batch mode: a fetched batch (up to the consumer's `batch` events) in one
    transaction. `scope` is entered with the batch's unit of work around its handlers and left
    before the commit (what the handlers deferred is done there, once for the batch; leaving on
    an error writes nothing); events of the `alone` types (full names) are handled each in a
    transaction of its own, in its place in the stream's order."""

    scope: BatchScope = _no_scope
    alone: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Delivery:
    msg: Msg
    event_id: str
    event: Message
    handler: Handler
    meta: EventMeta


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
        policy: DeliveryPolicy | None = None,
        concurrency: int = 1,
        batching: Batching | None = None,
    ) -> None:
        self.name = name
        self.source_service = source_service
        self.uow_factory = uow_factory
        self.namespace = namespace
        self.batch = batch
        self.retry_delay_seconds = retry_delay_seconds  # the pause while a dependency is down
        self.policy = policy or DeliveryPolicy(backoff_seconds=retry_delay_seconds)
        # Events handled at once (each in its own transaction): 1 keeps the stream's order; more
        # only for events independent of each other, such as the chunks of an import.
        self.concurrency = max(1, concurrency)
        # Batch mode: a fetched batch in one transaction (`concurrency` then does not apply).
        self.batching = batching
        self.batches = 0  # batches committed whole (batch mode)
        self.batches_split = 0  # batches that failed and were handled one event at a time
        self._handlers: dict[str, tuple[type[Message], Handler]] = {}
        self._failures: dict[str, int] = {}  # event id -> failed attempts (outages not counted)
        self.handled = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.skipped = 0  # events of types this consumer does not follow
        self._js: JetStreamContext | None = None

    def on(
        self, event_type: type[E], handler: Callable[[Any, E, EventMeta], Awaitable[None]]
    ) -> None:
        self._handlers[event_type.DESCRIPTOR.full_name] = (event_type, handler)  # type: ignore[assignment]

    @property
    def durable(self) -> str:
        return f"{self.name}".replace(".", "_")

    async def subscribe(self, js: JetStreamContext) -> Any:
        stream = await ensure_stream(js, self.namespace, self.source_service, self.policy.streams)
        await ensure_stream(js, self.namespace, events.DEAD_LETTERS, self.policy.dead_letters)
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

    async def _prepare(self, msg: Msg, *, counted: bool = False) -> _Delivery | None:
        """The event a message carries, decoded, with its handler; None for a type this
        consumer does not follow (then acknowledged); Unhandleable when it can never be."""
        headers = msg.headers or {}
        event_id = headers.get(EVENT_ID_HEADER) or headers.get(MSG_ID_HEADER)
        event_type = headers.get(EVENT_TYPE_HEADER, "")
        registered = self._handlers.get(event_type)
        if event_id is None:
            raise Unhandleable("the event has no id")
        if not event_type:
            raise Unhandleable("the event has no type")
        if registered is None:
            # Not one this consumer follows: a server without multi-subject filters (NATS
            # before 2.10) delivers the whole stream. Acknowledged and passed over.
            self.skipped += 1
            await msg.ack()
            return None
        message_type, handler = registered
        event = message_type()
        try:
            event.ParseFromString(msg.data)
        except DecodeError as error:
            raise Unhandleable(f"not a {event_type}: {error}") from error
        meta = EventMeta(event_id=event_id, event_type=event_type, subject=msg.subject)
        if not counted:
            metrics.delivered(self.name, msg)
        return _Delivery(msg, event_id, event, handler, meta)

    async def handle(self, msg: Msg, *, counted: bool = False) -> None:
        delivery = await self._prepare(msg, counted=counted)
        if delivery is None:
            return
        async with self.uow_factory() as uow:
            first = await uow.session.execute(
                pg_insert(inbox)
                .values(consumer=self.name, event_id=delivery.event_id)
                .on_conflict_do_nothing()
                .returning(inbox.c.event_id)
            )
            if first.first() is None:
                self.duplicates += 1
            else:
                await delivery.handler(uow, delivery.event, delivery.meta)
                await uow.commit()
                self.handled += 1
        await msg.ack()

    async def failed(self, msg: Msg, error: Exception) -> None:
        """A handler failed for a reason other than an outage: retry later with backoff, or
        park the event once it has had its attempts (at once if it can never be handled)."""
        headers = msg.headers or {}
        key = headers.get(EVENT_ID_HEADER) or headers.get(MSG_ID_HEADER) or msg.subject
        attempts = self._failures.get(key, 0) + 1
        if isinstance(error, Unhandleable) or attempts >= self.policy.max_deliver:
            try:
                await self.park(msg, error, attempts)
            except Exception:
                log.exception("could not park the event; will retry", consumer=self.name)
                await msg.nak(delay=self.policy.delay(attempts))
                return
            self._failures.pop(key, None)
            return
        self._failures[key] = attempts
        if len(self._failures) > 10_000:  # bounded: the oldest counts are forgotten
            self._failures.pop(next(iter(self._failures)))
        log.warning(
            "event handler failed; will retry",
            consumer=self.name,
            subject=msg.subject,
            attempt=attempts,
            of=self.policy.max_deliver,
            error=f"{type(error).__name__}: {scrub(str(error))[:200]}",
            exc_info=error,
        )
        await msg.nak(delay=self.policy.delay(attempts))

    async def park(self, msg: Msg, error: Exception, attempts: int) -> None:
        """Copy the event to the dead-letter stream with why, then stop its redelivery here."""
        assert self._js is not None
        headers = dict(msg.headers or {})
        event_id = headers.get(EVENT_ID_HEADER) or headers.get(MSG_ID_HEADER) or ""
        published = msg.metadata.timestamp if msg.metadata else None
        reason = f"{type(error).__name__}: {scrub(str(error))}"[:REASON_LIMIT]
        headers.update(
            {
                events.DEAD_CONSUMER_HEADER: self.name,
                events.DEAD_SUBJECT_HEADER: msg.subject,
                events.DEAD_REASON_HEADER: reason,
                events.DEAD_ATTEMPTS_HEADER: str(attempts),
                events.DEAD_FAILED_AT_HEADER: datetime.now(UTC).isoformat(),
                events.DEAD_PUBLISHED_AT_HEADER: published.isoformat() if published else "",
                # Parked once per consumer, whichever replica parks it.
                MSG_ID_HEADER: f"{self.name}:{event_id or msg.reply}",
            }
        )
        await self._js.publish(
            events.dead_letter_subject(self.namespace, self.name), msg.data, headers=headers
        )
        await msg.term()
        self.dead_lettered += 1
        log.error(
            "event parked in the dead-letter stream",
            consumer=self.name,
            subject=msg.subject,
            event_id=event_id,
            attempts=attempts,
            reason=reason,
        )

    async def _retry_later(self, messages: list[Msg]) -> None:
        log.warning(
            "database or a peer unavailable; events will be retried",
            consumer=self.name,
            events=len(messages),
        )
        for msg in messages:
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.retry_delay_seconds)
        await asyncio.sleep(self.retry_delay_seconds)

    async def _handled(self, msg: Msg, *, counted: bool = False) -> bool:
        """Handle one event, in the context it carried (its request id, its trace); False when
        a dependency was down (the event is left for `_retry_later`)."""
        with consuming(msg.subject, msg.headers, self.name) as span:
            try:
                await self.handle(msg, counted=counted)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failed_in(span, error)
                if outage(error):
                    return False
                with contextlib.suppress(Exception):
                    await self.failed(msg, error)
        return True

    async def _handle_together(self, messages: list[Msg]) -> list[Msg]:
        """A batch's events, `concurrency` at a time; those a dependency being down stopped."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(msg: Msg) -> bool:
            async with gate:
                return await self._handled(msg)

        done = await asyncio.gather(*(one(msg) for msg in messages))
        return [msg for msg, handled in zip(messages, done, strict=True) if not handled]

    async def handle_batch(self, messages: list[Msg]) -> list[Msg]:
        """A fetched batch in batch mode: runs of events in one transaction each, split at the
        `alone` types (each in its own, in order); those a dependency being down stopped."""
        assert self.batching is not None
        alone = self.batching.alone
        run: list[Msg] = []
        for index, msg in enumerate(messages):
            if (msg.headers or {}).get(EVENT_TYPE_HEADER, "") not in alone:
                run.append(msg)
                continue
            if run:
                given_back = await self._handle_run(run)
                if given_back:
                    return given_back + messages[index:]
                run = []
            if not await self._handled(msg):
                return messages[index:]
        return await self._handle_run(run) if run else []

    async def _handle_run(self, messages: list[Msg]) -> list[Msg]:
        """Events in one transaction: ids de-duplicated against the inbox in one statement, the
        new ones' handlers in order inside the batch scope, one commit, then every ack. On a
        failure other than an outage, the same events one at a time (the usual path)."""
        assert self.batching is not None
        deliveries: list[_Delivery] = []
        repeats: list[Msg] = []  # the same event twice in one fetch: acknowledged once handled
        taken: list[Msg] = []  # what the one-at-a-time fallback would handle, in order
        ids: set[str] = set()
        for msg in messages:
            try:
                delivery = await self._prepare(msg)
            except Exception as error:  # never handleable (parked), or the skipped one's ack
                with contextlib.suppress(Exception):
                    await self.failed(msg, error)
                continue
            if delivery is None:
                continue
            taken.append(msg)
            if delivery.event_id in ids:
                repeats.append(msg)
            else:
                ids.add(delivery.event_id)
                deliveries.append(delivery)
        if not deliveries:
            return []
        try:
            fresh = await self._commit_run(deliveries)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if outage(error):
                return taken
            self.batches_split += 1
            log.warning(
                "event batch failed; its events one at a time",
                consumer=self.name,
                events=len(taken),
                error=f"{type(error).__name__}: {scrub(str(error))[:200]}",
            )
            for index, msg in enumerate(taken):
                if not await self._handled(msg, counted=True):
                    return taken[index:]
            return []
        self.batches += 1
        self.handled += fresh
        self.duplicates += len(deliveries) - fresh + len(repeats)
        for msg in [d.msg for d in deliveries] + repeats:
            with contextlib.suppress(Exception):  # an ack lost: redelivered, then a duplicate
                await msg.ack()
        return []

    async def _commit_run(self, deliveries: list[_Delivery]) -> int:
        """The events' new ones handled and committed in one transaction; how many were new."""
        assert self.batching is not None
        async with self.uow_factory() as uow:
            # One statement of the same text whatever the batch's size (compiled once).
            rows = await uow.session.execute(
                pg_insert(inbox)
                .from_select(
                    ["consumer", "event_id"],
                    select(literal(self.name), func.unnest(bindparam("ids", type_=ARRAY(Text)))),
                )
                .on_conflict_do_nothing()
                .returning(inbox.c.event_id),
                {"ids": [d.event_id for d in deliveries]},
            )
            new = {r[0] for r in rows}
            fresh = [d for d in deliveries if d.event_id in new]
            if fresh:
                async with self.batching.scope(uow):
                    for d in fresh:
                        with consuming(d.msg.subject, d.msg.headers, self.name) as span:
                            try:
                                await d.handler(uow, d.event, d.meta)
                                # Its events carry its trace, not the batch's last one.
                                await uow.write_events()
                            except Exception as error:
                                failed_in(span, error)
                                raise
            await uow.commit()
        return len(fresh)

    async def run(self, js: JetStreamContext) -> None:
        self._js = js
        sub = await self.subscribe(js)
        try:
            while True:
                try:
                    messages = await sub.fetch(self.batch, timeout=1.0)
                except (FetchTimeoutError, TimeoutError):
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    # The consumer outlives whatever the bus answers: a node lost, a leader
                    # being elected (one warning a pause), or anything else (logged as the
                    # bug it may be); it fetches again after a pause.
                    log_round_failed(log, "fetching events", error, consumer=self.name)
                    await asyncio.sleep(self.retry_delay_seconds)
                    continue
                if self.batching is not None:
                    given_back = await self.handle_batch(messages)
                    if given_back:
                        await self._retry_later(given_back)
                    continue
                if self.concurrency > 1:
                    given_back = await self._handle_together(messages)
                    if given_back:
                        await self._retry_later(given_back)
                    continue
                for index, msg in enumerate(messages):
                    if not await self._handled(msg):
                        # One warning for the batch: it is all given back and retried.
                        await self._retry_later(messages[index:])
                        break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


Root = TypeVar("Root")
# A table entry's handler: the service's root, the consumer's unit of work, the decoded event.
TableHandler = Callable[[Root, Any, Any], Awaitable[None]]


@dataclass(frozen=True)
class Subscription(Generic[Root]):
    """One durable consumer of a service, as a row of its handler table (entrypoints/consumers):
    its name, the service whose events it reads, and a handler per event type."""

    name: str
    source_service: str
    handlers: Mapping[type[Message], TableHandler[Root]]
    concurrency: int = 1  # events handled at once: more only for independent ones
    batched: Batched[Root] | None = None  # batch mode (a fetched batch in one transaction)


@dataclass(frozen=True)
class Batched(Generic[Root]):
    """A table row's batch mode (see `Batching`): up to `size` events a transaction; `scope`
    is given the service's root and the batch's unit of work; `alone` are the event types
    handled each in its own transaction, in order (merges, erasures)."""

    size: int = 500
    scope: Callable[[Root, Any], AbstractAsyncContextManager[object]] | None = None
    alone: frozenset[type[Message]] = frozenset()

    def batching(self, root: Root) -> Batching:
        scope = self.scope
        return Batching(
            functools.partial(scope, root) if scope is not None else _no_scope,
            frozenset(t.DESCRIPTOR.full_name for t in self.alone),
        )


def consumers_of(
    table: Sequence[Subscription[Root]],
    root: Root,
    uow_factory: Callable[[], UnitOfWork],
    namespace: str,
) -> list[EventConsumer]:
    """The consumers a handler table describes, each handler given the service's root."""
    found = []
    for row in table:
        consumer = EventConsumer(
            row.name,
            row.source_service,
            uow_factory,
            namespace=namespace,
            batch=row.batched.size if row.batched is not None else 100,
            concurrency=row.concurrency,
            batching=row.batched.batching(root) if row.batched is not None else None,
        )
        for event_type, handler in row.handlers.items():
            consumer.on(event_type, functools.partial(_with_root, handler, root))
        found.append(consumer)
    return found


async def _with_root(
    handler: TableHandler[Root], root: Root, uow: UnitOfWork, event: Any, _meta: EventMeta
) -> None:
    await handler(root, uow, event)


U = TypeVar("U")  # a unit of work, as the service's use cases type it


class HasClock(Protocol):
    @property
    def clock(self) -> Callable[[], datetime]: ...


def member_merges(
    merged: Callable[[U, str, str, datetime], Awaitable[object]],
    unmerged: Callable[[U, str, str, datetime], Awaitable[object]],
    erased: Callable[[U, str, datetime], Awaitable[object]],
) -> dict[type[Message], TableHandler[Any]]:
    """The rows of a handler table for identity's merges, unmerges and erasures, which every
    service that keeps member-scoped state follows the same way: each event's members, and the
    time from the service's clock, handed to the service's use case."""
    from loyalty.identity.v1 import events_pb2 as identity

    async def on_merged(app: HasClock, uow: U, e: identity.MemberMerged) -> None:
        await merged(uow, e.survivor_member_id, e.absorbed_member_id, app.clock())

    async def on_unmerged(app: HasClock, uow: U, e: identity.MemberUnmerged) -> None:
        await unmerged(uow, e.survivor_member_id, e.restored_member_id, app.clock())

    async def on_erased(app: HasClock, uow: U, e: identity.MemberErased) -> None:
        await erased(uow, e.member_id, app.clock())

    return {
        identity.MemberMerged: on_merged,
        identity.MemberUnmerged: on_unmerged,
        identity.MemberErased: on_erased,
    }
