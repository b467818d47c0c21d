"""Poison events: retried a bounded number of times with backoff, then parked with their reason
in the dead-letter stream while the consumer carries on; replayed once the cause is fixed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from loyalty_kit import db, events
from loyalty_kit.deadletters import parked, replay
from loyalty_kit.events import EventMeta, StreamLimits
from loyalty_kit.inbox import DeliveryPolicy, EventConsumer
from loyalty_kit.settings import Settings
from loyalty_kit.uow import UnitOfWork
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.kit.dynamic_events import event_type
from tests.kit.test_inbox import ledger, make_ledger, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUICK = DeliveryPolicy(max_deliver=3, backoff_seconds=0.05, backoff_max_seconds=0.2)


class Handler:
    """Records each event's n; fails for the numbers in `poison` (as `error`) until cured."""

    def __init__(self, poison: set[int], error: Callable[[], Exception] | None = None) -> None:
        self.poison = poison
        self.error = error
        self.calls: dict[int, int] = {}

    async def __call__(self, uow: UnitOfWork, event: Any, meta: EventMeta) -> None:
        self.calls[event.n] = self.calls.get(event.n, 0) + 1
        await uow.session.execute(
            text("INSERT INTO seen (event_id, n) VALUES (:id, :n)"),
            {"id": meta.event_id, "n": event.n},
        )
        if event.n in self.poison:
            if self.error is not None:
                raise self.error()
            raise RuntimeError(f"cannot handle event {event.n}")


def consumer(
    engine: AsyncEngine, settings: Settings, service: str, handler: Handler, name: str = "a"
) -> EventConsumer:
    sessions = db.session_factory(engine)
    made = EventConsumer(
        f"{name}-{service}",
        service,
        lambda: UnitOfWork(sessions, settings.event_namespace),
        namespace=settings.event_namespace,
        retry_delay_seconds=0.05,
        policy=QUICK,
    )
    made.on(event_type(service), handler)
    return made


async def publish(js: JetStreamContext, settings: Settings, service: str, *numbers: int) -> None:
    Happened = event_type(service)
    for n in numbers:
        await js.publish(
            events.event_subject(Happened(), settings.event_namespace),
            Happened(n=n).SerializeToString(),
            headers={
                events.EVENT_ID_HEADER: str(uuid.uuid4()),
                events.EVENT_TYPE_HEADER: Happened.DESCRIPTOR.full_name,
            },
        )


async def running(*consumers: EventConsumer, until: Any, js: JetStreamContext) -> None:
    tasks = [asyncio.create_task(c.run(js)) for c in consumers]
    try:
        await wait_for(until, timeout=15)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_poison_event_is_parked_after_its_attempts_and_the_next_events_are_handled(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    handler = Handler(poison={1})
    c = consumer(kit_db, settings, stream_service, handler)
    await publish(js, settings, stream_service, 0, 1, 2, 3)

    async def settled() -> bool:
        return c.handled == 3 and c.dead_lettered == 1

    await running(c, until=settled, js=js)
    assert sorted(n for _, n in await ledger(kit_db)) == [0, 2, 3]  # the failures left no trace
    assert handler.calls[1] == QUICK.max_deliver
    [dead] = await parked(js, settings.event_namespace, c.name)
    assert dead.consumer == c.name
    assert dead.attempts == QUICK.max_deliver
    assert dead.reason == "RuntimeError: cannot handle event 1"
    assert dead.event_type == event_type(stream_service).DESCRIPTOR.full_name
    assert dead.subject == events.event_subject(event_type(stream_service)(), "x").replace(
        "x.", f"{settings.event_namespace}.", 1
    )
    assert dead.published_at and dead.failed_at


async def test_an_event_that_cannot_be_decoded_is_parked_at_once(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    Happened = event_type(stream_service)
    c = consumer(kit_db, settings, stream_service, Handler(poison=set()))
    await js.publish(
        events.event_subject(Happened(), settings.event_namespace),
        b"\xff\xff\xff",
        headers={
            events.EVENT_ID_HEADER: str(uuid.uuid4()),
            events.EVENT_TYPE_HEADER: Happened.DESCRIPTOR.full_name,
        },
    )
    await publish(js, settings, stream_service, 5)

    async def settled() -> bool:
        return c.handled == 1 and c.dead_lettered == 1

    await running(c, until=settled, js=js)
    [dead] = await parked(js, settings.event_namespace, c.name)
    assert dead.attempts == 1
    assert dead.reason.startswith("Unhandleable: not a loyalty.")


def _unavailable() -> Exception:
    error: Exception = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "peer down"
    )
    return error


async def test_retries_while_a_dependency_is_down_do_not_count_towards_parking(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    outage = {"left": 2 * QUICK.max_deliver}

    def peer_down() -> Exception:
        outage["left"] -= 1
        return _unavailable()

    handler = Handler(poison={7}, error=peer_down)
    c = consumer(kit_db, settings, stream_service, handler)
    await publish(js, settings, stream_service, 7)

    async def settled() -> bool:
        if outage["left"] <= 0:
            handler.poison.clear()  # the peer is back
        return c.handled == 1

    await running(c, until=settled, js=js)
    assert c.dead_lettered == 0
    assert handler.calls[7] > QUICK.max_deliver
    assert [n for _, n in await ledger(kit_db)] == [7]


async def test_replay_hands_the_event_to_the_consumer_that_failed_and_no_one_else(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    failing = Handler(poison={4})
    healthy = Handler(poison=set())
    a = consumer(kit_db, settings, stream_service, failing, name="a")
    b = consumer(kit_db, settings, stream_service, healthy, name="b")
    await publish(js, settings, stream_service, 4)

    async def parked_by_a() -> bool:
        return a.dead_lettered == 1 and b.handled == 1

    await running(a, b, until=parked_by_a, js=js)
    [dead] = await parked(js, settings.event_namespace, a.name)

    failing.poison.clear()  # the bug is fixed
    [result] = await replay(
        js, settings.event_namespace, [dead.seq], inbox_retention=timedelta(days=30)
    )
    assert (result.seq, result.event_id, result.outcome) == (dead.seq, dead.event_id, "replayed")

    async def replayed() -> bool:
        return a.handled == 1 and b.duplicates == 1

    await running(a, b, until=replayed, js=js)
    assert failing.calls[4] == QUICK.max_deliver + 1
    assert healthy.calls[4] == 1  # b found the id in its inbox
    assert await parked(js, settings.event_namespace, a.name) == []
    assert [event_id for event_id, _ in await ledger(kit_db)] == [dead.event_id] * 2  # a and b


async def test_replay_refuses_events_older_than_the_inbox_memory_unless_forced(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    c = consumer(kit_db, settings, stream_service, Handler(poison={9}))
    await publish(js, settings, stream_service, 9)

    async def parked_once() -> bool:
        return c.dead_lettered == 1

    await running(c, until=parked_once, js=js)
    [dead] = await parked(js, settings.event_namespace, c.name)
    later = datetime.now(UTC) + timedelta(days=31)
    [refused] = await replay(
        js, settings.event_namespace, [dead.seq], inbox_retention=timedelta(days=30), now=later
    )
    assert refused.outcome.startswith("refused: older than the inbox retention")
    assert await parked(js, settings.event_namespace, c.name) == [dead]
    [forced] = await replay(
        js,
        settings.event_namespace,
        [dead.seq],
        inbox_retention=timedelta(days=30),
        now=later,
        force=True,
    )
    assert forced.outcome == "replayed"


def _cli(settings: Settings, *args: str, nats_url: str | None = None) -> Any:
    env = {
        **os.environ,
        "LOYALTY_NATS_URL": settings.nats_url if nats_url is None else nats_url,
        "LOYALTY_EVENT_NAMESPACE": settings.event_namespace,
    }
    return subprocess.run(
        [sys.executable, "-m", "loyalty_kit.events_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_command_line_lists_replays_and_drops(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    await make_ledger(kit_db)
    c = consumer(kit_db, settings, stream_service, Handler(poison={1, 2}))
    await publish(js, settings, stream_service, 1, 2)

    async def both_parked() -> bool:
        return c.dead_lettered == 2

    await running(c, until=both_parked, js=js)
    listed = await asyncio.to_thread(
        _cli, settings, "dead-letters", "list", "--consumer", c.name, "--json"
    )
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert [p["attempts"] for p in shown] == [QUICK.max_deliver] * 2
    first, second = (p["seq"] for p in shown)

    dropped = await asyncio.to_thread(_cli, settings, "dead-letters", "drop", str(first))
    assert (dropped.returncode, dropped.stdout.strip()) == (0, "1 dropped")
    replayed = await asyncio.to_thread(
        _cli, settings, "dead-letters", "replay", "--consumer", c.name
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.split()[0] == str(second) and "replayed" in replayed.stdout
    assert await parked(js, settings.event_namespace, c.name) == []
    missing = await asyncio.to_thread(_cli, settings, "dead-letters", "replay", str(first))
    assert missing.returncode == 1 and "no such parked event" in missing.stdout

    down = await asyncio.to_thread(
        _cli, settings, "dead-letters", "list", nats_url="nats://127.0.0.1:1"
    )
    assert down.returncode == 2 and "NATS unavailable" in down.stderr


async def test_streams_carry_their_retention_limits(
    js: JetStreamContext, settings: Settings
) -> None:
    service = f"limits{uuid.uuid4().hex[:8]}"
    limits = StreamLimits(max_age_seconds=3600, max_bytes=1024**2)
    name = await events.ensure_stream(js, settings.event_namespace, service, limits)
    try:
        config = (await js.stream_info(name)).config
        assert (config.max_age, config.max_bytes, config.discard) == (
            3600,
            1024**2,
            DiscardPolicy.OLD,
        )
        # Changed settings reach an existing stream at the next start.
        await events.ensure_stream(js, settings.event_namespace, service, StreamLimits(7200, -1))
        config = (await js.stream_info(name)).config
        assert (config.max_age, config.max_bytes) == (7200, -1)
    finally:
        await js.delete_stream(name)


async def test_the_policy_comes_from_the_settings() -> None:
    policy = DeliveryPolicy.from_settings(
        Settings(event_max_deliver=4, event_retry_backoff_seconds=0.5, event_stream_replicas=3)
    )
    assert policy.max_deliver == 4
    assert [policy.delay(n) for n in (1, 2, 3, 9)] == [0.5, 1.0, 2.0, 60.0]
    assert policy.streams.replicas == policy.dead_letters.replicas == 3
    assert policy.streams.max_age_seconds == 14 * 86400


async def test_a_paused_consumer_shows_its_lag_and_catches_up(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    """Backpressure made visible: events pile up behind a consumer that is not running (a
    service paused or down), `loyalty-events lag` shows how many, and they drain when it runs."""
    await make_ledger(kit_db)
    c = consumer(kit_db, settings, stream_service, Handler(poison=set()))
    stream = await c.subscribe(js)  # the durable exists; nobody fetches: the consumer is paused
    await stream.unsubscribe()
    await publish(js, settings, stream_service, *range(25))

    async def lag_of() -> int:
        [mine] = [
            lag
            for lag in await events.consumer_lag(js, settings.event_namespace)
            if lag.consumer == c.durable
        ]
        return mine.behind

    assert await lag_of() == 25
    shown = await asyncio.to_thread(_cli, settings, "lag", "--json")
    assert shown.returncode == 0, shown.stderr
    [row] = [r for r in json.loads(shown.stdout) if r["consumer"] == c.durable]
    assert (row["stream"], row["pending"], row["behind"]) == (
        events.stream_name(settings.event_namespace, stream_service),
        25,
        25,
    )

    async def caught_up() -> bool:
        return c.handled == 25 and await lag_of() == 0

    await running(c, until=caught_up, js=js)
    assert sorted(n for _, n in await ledger(kit_db)) == list(range(25))


async def test_an_event_of_a_type_the_consumer_does_not_follow_is_passed_over_not_parked(
    kit_db: AsyncEngine, js: JetStreamContext, settings: Settings, stream_service: str
) -> None:
    """A server without multi-subject filters (NATS before 2.10) delivers a consumer the whole
    stream: events it has no handler for are someone else's, acknowledged and passed over."""
    await make_ledger(kit_db)
    Happened = event_type(stream_service)
    c = consumer(kit_db, settings, stream_service, Handler(poison=set()))
    await js.publish(
        events.event_subject(Happened(), settings.event_namespace),
        b"",
        headers={
            events.EVENT_ID_HEADER: str(uuid.uuid4()),
            events.EVENT_TYPE_HEADER: f"loyalty.{stream_service}.v1.SomethingElse",
        },
    )
    await publish(js, settings, stream_service, 6)

    async def settled() -> bool:
        return c.handled == 1 and c.skipped == 1

    await running(c, until=settled, js=js)
    assert c.dead_lettered == 0
    assert await parked(js, settings.event_namespace, c.name) == []
