"""OpenTelemetry: traces for gRPC (server and client) and SQLAlchemy, off by default.

Called before any server, channel or engine is created (instrumentation patches constructors).
Health checks are filtered out of traces. One SQLAlchemy instrumentation covers every engine;
asyncpg is deliberately not instrumented too (it would duplicate each query span).

`LOYALTY_OTEL_EXPORTER=memory` keeps the last spans in the process (`recorded_spans`), for tests
that look at what traces carry; `stop_tracing` ends it. A process sets its tracer provider once:
tracing set up again after a stop instruments again and sends to the exporter chosen first.

Beyond these instrumentations, the kit traces its events (`loyalty_kit.correlation`): the span
that writes an event to the outbox, and a consumer's handling of it as that span's child.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loyalty_kit.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

MEMORY_SPANS = 10_000  # what the memory exporter keeps: the most recent

_configured = False  # the tracer provider is set (once per process)
_instrumented = False  # gRPC and SQLAlchemy are instrumented: tracing is on
_memory = False  # the provider's exporter is the memory one
_recording = False  # whether the memory exporter keeps what it is given
_recent: collections.deque[ReadableSpan] = collections.deque(maxlen=MEMORY_SPANS)


def recorded_spans() -> list[ReadableSpan]:
    """The spans the memory exporter has kept, oldest first."""
    return list(_recent)


def tracing_on() -> bool:
    """Whether this process traces (`setup_tracing` ran with an exporter, and no stop since)."""
    return _instrumented


def stop_tracing() -> None:
    """Remove the instrumentation and stop keeping spans (tests)."""
    global _recording, _instrumented
    if not _instrumented:
        return
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    GrpcAioInstrumentorServer().uninstrument()
    GrpcAioInstrumentorClient().uninstrument()
    SQLAlchemyInstrumentor().uninstrument()
    _recording = False
    _instrumented = False
    _recent.clear()


def setup_tracing(service: str, settings: Settings) -> bool:
    global _configured, _recording, _instrumented
    if settings.otel_exporter == "none" or _instrumented:
        return False
    if not _configured:
        _set_provider(service, settings)
    _recording = _memory
    _instrument()
    _instrumented = True
    return True


def _set_provider(service: str, settings: Settings) -> None:
    global _configured, _memory
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class RecentSpans(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            if _recording:
                _recent.extend(spans)
            return SpanExportResult.SUCCESS

    exporter: SpanExporter
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint or None, insecure=True)
    elif settings.otel_exporter == "memory":
        exporter = RecentSpans()
        _memory = True
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"loyalty-{service}"}))
    # In memory, each span as it ends, so a test reads what its calls made.
    processor = SimpleSpanProcessor if settings.otel_exporter == "memory" else BatchSpanProcessor
    provider.add_span_processor(processor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


def _instrument() -> None:
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
        filters,
    )
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    not_health = filters.negate(filters.health_check())
    GrpcAioInstrumentorServer().instrument(filter_=not_health)
    GrpcAioInstrumentorClient().instrument(filter_=not_health)
    # The instrumentation's declared range lags SQLAlchemy's releases (2.1 is outside it) though
    # the engine events it listens to are unchanged; without skipping the check it would refuse.
    SQLAlchemyInstrumentor().instrument(enable_commenter=False, skip_dep_check=True)
