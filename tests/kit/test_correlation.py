"""The request id and the trace of the work that writes an event travel with it: kept in its
outbox row, published as its NATS headers, and the context its consumer handles it in; every
log line says which request and which span it was written for."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from loyalty_kit import correlation, db, telemetry
from loyalty_kit.events import EventMeta
from loyalty_kit.inbox import EventConsumer
from loyalty_kit.logs import configure_logging, get_logger
from loyalty_kit.outbox import OutboxRelay
from loyalty_kit.settings import Settings
from loyalty_kit.uow import UnitOfWork
from nats.js import JetStreamContext
from opentelemetry import trace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.kit.dynamic_events import event_type

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def request_id() -> Iterator[str]:
    """A request id for the test's own work (reset after: the session's loop runs on)."""
    value = f"pos-{uuid.uuid4().hex[:12]}"
    token = correlation.set_request_id(value)
    yield value
    correlation.reset_request_id(token)


@pytest_asyncio.fixture(loop_scope="session")
async def traced(settings: Settings) -> AsyncIterator[None]:
    """Tracing into memory for one test."""
    telemetry.setup_tracing("kit", settings.model_copy(update={"otel_exporter": "memory"}))
    try:
        yield
    finally:
        telemetry.stop_tracing()


class Seen:
    """What a consumer's handler found current while handling each event."""

    def __init__(self) -> None:
        self.contexts: list[tuple[str | None, tuple[str, str] | None]] = []
        self.arrived = asyncio.Event()
        self.wanted = 1

    async def handler(self, _uow: UnitOfWork, _event: Any, _meta: EventMeta) -> None:
        self.contexts.append((correlation.current_request_id(), correlation.trace_ids()))
        if len(self.contexts) >= self.wanted:
            self.arrived.set()


async def write(engine: AsyncEngine, settings: Settings, service: str, *notes: str) -> None:
    async with UnitOfWork(db.session_factory(engine), settings.event_namespace) as uow:
        if len(notes) == 1:
            await uow.outbox.add(event_type(service)(note=notes[0]))
        else:
            await uow.outbox.add_many([event_type(service)(note=n) for n in notes])
        await uow.commit()


async def consume(
    engine: AsyncEngine, js: JetStreamContext, settings: Settings, service: str, count: int
) -> Seen:
    """Relay what is pending and handle `count` events; what the handler saw."""
    await OutboxRelay(engine, js).publish_pending()
    sessions = db.session_factory(engine)
    consumer = EventConsumer(
        f"seen-{service}",
        service,
        lambda: UnitOfWork(sessions, settings.event_namespace),
        namespace=settings.event_namespace,
    )
    seen = Seen()
    seen.wanted = count
    consumer.on(event_type(service), seen.handler)
    running = asyncio.create_task(consumer.run(js))
    try:
        await asyncio.wait_for(seen.arrived.wait(), 10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    return seen


async def stored_headers(engine: AsyncEngine) -> list[dict[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT headers FROM kit_outbox ORDER BY seq"))
        return [r.headers if isinstance(r.headers, dict) else json.loads(r.headers) for r in rows]


async def test_untraced_the_request_id_alone_travels_to_the_consumer(
    kit_db: AsyncEngine,
    js: JetStreamContext,
    settings: Settings,
    stream_service: str,
    request_id: str,
) -> None:
    assert not telemetry.tracing_on()
    await write(kit_db, settings, stream_service, "first")
    await write(kit_db, settings, stream_service, "second", "third")  # one statement
    token = correlation.set_request_id(None)
    await write(kit_db, settings, stream_service, "from a job")  # no request: no id
    correlation.reset_request_id(token)

    expected = {correlation.REQUEST_ID_HEADER: request_id}
    assert await stored_headers(kit_db) == [expected, expected, expected, {}]
    seen = await consume(kit_db, js, settings, stream_service, 4)
    assert seen.contexts == [(request_id, None)] * 3 + [(None, None)]


async def test_traced_the_consumer_span_continues_the_writer_s_trace(
    kit_db: AsyncEngine,
    js: JetStreamContext,
    settings: Settings,
    stream_service: str,
    request_id: str,
    traced: None,
) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("a purchase") as root:
        await write(kit_db, settings, stream_service, "earned")
    trace_id = format(root.get_span_context().trace_id, "032x")
    (stored,) = await stored_headers(kit_db)
    assert stored[correlation.REQUEST_ID_HEADER] == request_id
    assert stored["traceparent"].split("-")[1] == trace_id

    seen = await consume(kit_db, js, settings, stream_service, 1)
    ((seen_request, seen_trace),) = seen.contexts
    assert seen_request == request_id
    assert seen_trace is not None and seen_trace[0] == trace_id

    spans = {
        s.name: s for s in telemetry.recorded_spans() if s.context.trace_id == int(trace_id, 16)
    }
    subject = f"{settings.event_namespace}.{stream_service}.v1.Happened"
    created, processed = spans[f"create {subject}"], spans[f"process {subject}"]
    assert created.kind == trace.SpanKind.PRODUCER and processed.kind == trace.SpanKind.CONSUMER
    assert created.parent is not None and created.parent.span_id == root.get_span_context().span_id
    assert processed.parent is not None and processed.parent.span_id == created.context.span_id
    assert processed.attributes is not None
    assert processed.attributes["messaging.consumer.group.name"] == f"seen-{stream_service}"
    assert format(processed.context.span_id, "016x") == seen_trace[1]  # the handler ran in it


async def test_every_log_line_says_which_request_and_span_it_was_written_for(
    capfd: pytest.CaptureFixture[str], request_id: str
) -> None:
    configure_logging("test", "INFO", "json")
    parent = trace.SpanContext(
        int(uuid.uuid4().hex, 16), int(uuid.uuid4().hex[:16], 16), is_remote=True
    )
    with trace.use_span(trace.NonRecordingSpan(parent)):
        get_logger("test").info("in a request")
    token = correlation.set_request_id(None)
    get_logger("test").info("outside any")
    correlation.reset_request_id(token)
    inside, outside = (json.loads(line) for line in capfd.readouterr().err.splitlines()[-2:])
    assert inside["request_id"] == request_id
    assert inside["trace_id"] == format(parent.trace_id, "032x")
    assert inside["span_id"] == format(parent.span_id, "016x")
    assert not {"request_id", "trace_id", "span_id"} & outside.keys()
