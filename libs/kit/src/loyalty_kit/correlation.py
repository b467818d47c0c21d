"""What ties the work of one request together across the services: its request id and its W3C
trace context.

The request id comes with a call (`x-request-id` gRPC metadata; the gateway takes the caller's
`X-Request-Id` or makes one) and lives in a context variable while the call's work runs: every
log line carries it (`logs.add_correlation`), calls to other services pass it on (`channels`),
and the events the work writes carry it.

Events cross the bus later, from the outbox relay, outside the request. So what the request's
context was is stored with each outbox row (`event_headers`: `traceparent`/`tracestate` as
`opentelemetry.propagate` writes them, and the request id) and published as the event's NATS
headers. A consumer handles the event in that context again (`consuming`): the request id, and
a CONSUMER span that is a child of the span that wrote the event. One purchase through the
gateway is so one trace, from its HTTP span through the services' calls and every consumer the
purchase's events reach, down to the events those consumers write in turn.

With tracing off (`LOYALTY_OTEL_EXPORTER=none`, the default) nothing here starts a span or
parses a header: rows carry the request id alone, and consumers only set it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar, Token

from opentelemetry import propagate, trace

from loyalty_kit import telemetry

REQUEST_ID_METADATA = "x-request-id"  # gRPC metadata, and the gateway's HTTP header
REQUEST_ID_HEADER = "Loyalty-Request-Id"  # on an event (beside events.EVENT_ID_HEADER, ...)
# A request id is the caller's: kept when it is a short token of safe characters (it goes into
# logs, gRPC metadata and NATS headers), replaced otherwise.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")

_request_id: ContextVar[str | None] = ContextVar("loyalty_request_id", default=None)
tracer = trace.get_tracer("loyalty.events")


def usable_request_id(value: str | None) -> str | None:
    """`value` when it may serve as a request id, else None."""
    return value if value and _REQUEST_ID.fullmatch(value) else None


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> Token[str | None]:
    """Make `value` the request id of the work that follows in this context."""
    return _request_id.set(value)


def reset_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)


def request_id_of(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The request id a gRPC call came with, if usable."""
    for key, value in metadata or ():
        if key.lower() == REQUEST_ID_METADATA and isinstance(value, str):
            return usable_request_id(value)
    return None


def trace_ids() -> tuple[str, str] | None:
    """The current span's (trace id, span id) in hex, if there is one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


@contextlib.contextmanager
def event_headers(subjects: Sequence[str]) -> Iterator[dict[str, str]]:
    """Around writing events to the outbox: the headers to store with them. Traced, writing is
    a PRODUCER span (`create <subject>`), child of the work's span, whose context the headers
    carry; the request id comes along either way."""
    headers: dict[str, str] = {}
    request_id = _request_id.get()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    if not telemetry.tracing_on():
        yield headers
        return
    subject = subjects[0] if len(set(subjects)) == 1 else "events"
    attributes: dict[str, str | int] = {
        "messaging.system": "nats",
        "messaging.operation.type": "create",
        "messaging.destination.name": subject,
    }
    if len(subjects) > 1:
        attributes["messaging.batch.message_count"] = len(subjects)
    with tracer.start_as_current_span(
        f"create {subject}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ):
        propagate.inject(headers)
        yield headers


@contextlib.contextmanager
def consuming(
    subject: str, headers: Mapping[str, str] | None, consumer: str
) -> Iterator[trace.Span]:
    """Around a consumer's handling of one event: the request id the event carried, and,
    traced, a CONSUMER span (`process <subject>`) continuing the trace of the work that wrote
    the event (a new trace for an event that carried none)."""
    headers = headers or {}
    token = _request_id.set(usable_request_id(headers.get(REQUEST_ID_HEADER)))
    try:
        if not telemetry.tracing_on():
            yield trace.INVALID_SPAN
            return
        with tracer.start_as_current_span(
            f"process {subject}",
            context=propagate.extract(headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": subject,
                "messaging.consumer.group.name": consumer,
            },
        ) as span:
            yield span
    finally:
        _request_id.reset(token)


def failed_in(span: trace.Span, error: BaseException) -> None:
    """Mark a consumer's span failed, naming the error's type only (its text may hold what a
    trace must not)."""
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
