"""Prometheus metrics of a service, served in the Prometheus text format on a port of its own
(`LOYALTY_METRICS_PORT`, else the service's default: gateway 9460, identity 9461, points 9462,
tiers 9463, benefits 9464, insights 9465,
engagement 9466; 0 takes a free port, -1 serves none).

Every running service has its own registry (`ServiceMetrics`), so services started side by side
in one process (tests, the embedded suite) each answer for themselves. What is measured where:

- RPCs: the interceptor, for every method a service serves (health and reflection excepted),
  by method and status code; count and latency.
- HTTP: the gateway's middleware, by route template (never the raw path) and status.
- Database pool: read from the engine's pool when scraped (in use, idle, waits, time waited).
- Outbox and consumers: counters the relay and the consumers keep, and, when scraped, the
  outbox's backlog and the age of its oldest unpublished event, and each consumer's pending
  and unacknowledged events as JetStream reports them.
- Jobs: every round of `jobs.every`, by job name, with its outcome and duration.
- Business: the domain events a committed transaction wrote to the outbox, counted once
  committed, by event type and a label that identifies no one (a unit, a tier, a catalogue
  code; see `business`). Counting them where they are written keeps the counters out of the
  use cases and makes them agree with what the other services are told.

Work finds its service's metrics through a context variable, set by the interceptor for each
call and by the server for each background task (`use`). Labels never carry personal data or
member ids: methods, routes, consumers and jobs are named in code, units and tiers by the
programme; a label value that still looks like personal data is replaced (`safe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import prometheus_client
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from loyalty_kit.business import COUNTED, business_counts
from loyalty_kit.live_metrics import RuntimeCollector, Watched
from loyalty_kit.logs import get_logger

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from loyalty_kit.inbox import EventConsumer
    from loyalty_kit.outbox import OutboxRelay

log = get_logger("loyalty.metrics")

# Counters without their `_created` series: half the series, nothing a dashboard reads.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
JOB_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

# What a label value must never look like: an e-mail, a phone number, a UUID (member ids),
# a member's resource name (not a template's `members/*`), or a long run of digits (an id
# number, a card).
_UNSAFE = re.compile(r"@|\+?\d[\d -]{7,}\d|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-|members/[^*]|\d{9,}")
REDACTED = "redacted"


def safe(value: str) -> str:
    """A label value as exported: bounded in length, and replaced when it looks personal."""
    value = value[:64]
    return REDACTED if _UNSAFE.search(value) else value


class ServiceMetrics:
    """One service's registry and the instruments the kit records into it."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=self.registry)
        r = self.registry
        self.rpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by method and status code.",
            ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its answer, by method and status code.",
            ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "loyalty_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "loyalty_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.serving = Gauge(
            "loyalty_health_serving",
            "1 while the service's health says SERVING, 0 while NOT_SERVING.",
            registry=r,
        )
        self.events_written = Counter(
            "loyalty_events_written",
            "Domain events committed to the outbox, by event type.",
            ["event_type"],
            registry=r,
        )
        self.redeliveries = Counter(
            "loyalty_consumer_redeliveries",
            "Events delivered to a consumer again (a nak, a missed ack, a restart).",
            ["consumer"],
            registry=r,
        )
        self.delivery_lag = Histogram(
            "loyalty_consumer_delivery_lag_seconds",
            "Time from an event's publication to its delivery to a consumer.",
            ["consumer"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.job_runs = Counter(
            "loyalty_job_runs",
            "Rounds of a scheduled job, by job and outcome (ok, failed).",
            ["job", "outcome"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "loyalty_job_duration_seconds",
            "Time a round of a scheduled job took.",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.restarts = Counter(
            "loyalty_background_restarts",
            "Background work (relay, consumer, job) that crashed and was started again.",
            ["task"],
            registry=r,
        )
        self.business: dict[str, Counter] = {
            name: Counter(name, text, labels, registry=r)
            for name, (text, labels) in business_counts().items()
        }
        self.runtime = RuntimeCollector()
        r.register(self.runtime)
        self.endpoint: Endpoint | None = None
        self.own: dict[str, Counter] = {}  # a service's own counters (`add`)

    # -- recording ------------------------------------------------------------------------
    def rpc(self, kind: str, method: str, code: str, seconds: float) -> None:
        service, _, name = method.strip("/").partition("/")
        labels = (kind, service, name, code)
        self.rpc_handled.labels(*labels).inc()
        self.rpc_seconds.labels(*labels).observe(seconds)

    def committed(self, messages: Iterable[Message]) -> None:
        for message in messages:
            self.events_written.labels(message.DESCRIPTOR.full_name).inc()
            for name, labels, amount in _business_of(message):
                self.business[name].labels(*map(safe, labels)).inc(amount)

    def counter(self, name: str, text: str, labels: Sequence[str]) -> Counter:
        """A counter of the service's own, made on first use."""
        found = self.own.get(name)
        if found is None:
            found = self.own[name] = Counter(name, text, list(labels), registry=self.registry)
        return found

    def delivered(self, consumer: str, msg: Msg) -> None:
        try:
            meta = msg.metadata
        except Exception:  # not a JetStream message: nothing to say about it
            return
        if meta.num_delivered and meta.num_delivered > 1:
            self.redeliveries.labels(consumer).inc()
        if meta.timestamp is not None:
            lag = time.time() - meta.timestamp.timestamp()
            self.delivery_lag.labels(consumer).observe(max(lag, 0.0))

    @contextlib.contextmanager
    def job_round(self, job: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except asyncio.CancelledError:  # the service stopping: not a round that failed
            raise
        except BaseException:
            self._job_done(job, "failed", started)
            raise
        self._job_done(job, "ok", started)

    def _job_done(self, job: str, outcome: str, started: float) -> None:
        self.job_runs.labels(job, outcome).inc()
        self.job_seconds.labels(job).observe(time.perf_counter() - started)

    # -- what the collector reads when scraped ----------------------------------------------
    def watch(
        self,
        *,
        engine: AsyncEngine | None,
        js: JetStreamContext | None,
        relay: OutboxRelay | None,
        consumers: Sequence[EventConsumer],
    ) -> None:
        self.runtime.watched = Watched(engine, js, relay, consumers, asyncio.get_running_loop())


# -- which service's metrics: a context variable ----------------------------------------------

_current: contextvars.ContextVar[ServiceMetrics | None] = contextvars.ContextVar(
    "loyalty_metrics", default=None
)


def current() -> ServiceMetrics | None:
    return _current.get()


@contextlib.contextmanager
def use(metrics: ServiceMetrics | None) -> Iterator[None]:
    """Work inside the block records into `metrics` (a call's handler)."""
    token = _current.set(metrics)
    try:
        yield
    finally:
        _current.reset(token)


def context_of(metrics: ServiceMetrics | None) -> contextvars.Context:
    """A copy of the current context in which work records into `metrics` (a task's)."""
    context = contextvars.copy_context()
    context.run(_current.set, metrics)
    return context


# -- hooks the kit calls ---------------------------------------------------------------------

_PENDING = "loyalty.metrics.pending"


def written(session: AsyncSession, messages: Sequence[Message]) -> None:
    """Events added to a transaction's outbox: counted when it commits, never if it rolls
    back (the session's after_commit / after_rollback, below)."""
    metrics = _current.get()
    if metrics is None or not messages:
        return
    pending: list[tuple[ServiceMetrics, Sequence[Message]]] = session.info.setdefault(_PENDING, [])
    pending.append((metrics, messages))


@sa_event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    for metrics, messages in session.info.pop(_PENDING, ()):
        metrics.committed(messages)


@sa_event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def delivered(consumer: str, msg: Msg) -> None:
    """An event handed to a consumer: its redelivery and its delay since publication."""
    metrics = _current.get()
    if metrics is not None:
        metrics.delivered(consumer, msg)


@contextlib.contextmanager
def job_round(job: str) -> Iterator[None]:
    """A round of a scheduled job: counted with its outcome, timed."""
    metrics = _current.get()
    if metrics is None:
        yield
        return
    with metrics.job_round(job):
        yield


def add(name: str, text: str, labels: Mapping[str, str], amount: float = 1) -> None:
    """Count work of the service's own that writes no event to be counted by (the rows of a
    member import by outcome): the counter `name` (exported as `<name>_total`) is made on
    first use; label values pass `safe` like the business counters'."""
    metrics = _current.get()
    if metrics is not None and amount > 0:
        counter = metrics.counter(name, text, tuple(labels))
        counter.labels(*(safe(value) for value in labels.values())).inc(amount)


def restarted(task: str) -> None:
    metrics = _current.get()
    if metrics is not None:
        metrics.restarts.labels(task).inc()


# -- business counters from domain events ------------------------------------------------------


def _business_of(message: Message) -> Iterator[tuple[str, tuple[str, ...], float]]:
    for rule in COUNTED.get(message.DESCRIPTOR.full_name, ()):
        amount = rule.amount(message)
        if amount > 0:
            yield rule.metric, rule.labels(message), amount


# -- the endpoint --------------------------------------------------------------------------------


@dataclass
class Endpoint:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving and free the port. The server looks for the stop between waits of
        half a second; a connection wakes it at once instead."""
        stopping = threading.Thread(target=self.server.shutdown, daemon=True)
        stopping.start()
        host = str(self.server.server_address[0])
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        while stopping.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection((host, self.port), timeout=0.2).close()
            stopping.join(0.05)
        self.server.server_close()
        self.thread.join(5)


def serve(metrics: ServiceMetrics, host: str, port: int) -> Endpoint | None:
    """`/metrics` on `host:port` (0: a free port) in a thread of its own. A port that cannot be
    had is logged and the service runs without the endpoint: Prometheus then reports the
    target down, rather than the service not starting over its metrics."""
    if port < 0:
        return None
    try:
        server, thread = prometheus_client.start_http_server(
            port, addr=host, registry=metrics.registry
        )
    except OSError as error:
        log.error(
            "metrics endpoint not served", service=metrics.service, port=port, error=str(error)
        )
        return None
    metrics.endpoint = Endpoint(server, thread)
    return metrics.endpoint


async def close(metrics: ServiceMetrics) -> None:
    endpoint, metrics.endpoint = metrics.endpoint, None
    if endpoint is not None:
        await asyncio.to_thread(endpoint.close)
