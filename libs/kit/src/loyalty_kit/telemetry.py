"""OpenTelemetry: traces for gRPC (server and client) and SQLAlchemy, off by default.

Called before any server, channel or engine is created (instrumentation patches constructors).
Health checks are filtered out of traces. One SQLAlchemy instrumentation covers every engine;
asyncpg is deliberately not instrumented too (it would duplicate each query span).
"""

from __future__ import annotations

from loyalty_kit.settings import Settings

_configured = False


def setup_tracing(service: str, settings: Settings) -> bool:
    global _configured
    if settings.otel_exporter == "none" or _configured:
        return False
    from opentelemetry import trace
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
        filters,
    )
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint or None, insecure=True)
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"loyalty-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    not_health = filters.negate(filters.health_check())
    GrpcAioInstrumentorServer().instrument(filter_=not_health)
    GrpcAioInstrumentorClient().instrument(filter_=not_health)
    SQLAlchemyInstrumentor().instrument(enable_commenter=False)
    _configured = True
    return True
