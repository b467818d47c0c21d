"""Figures read from a running service when Prometheus scrapes it (loyalty_kit.metrics): its
database pool, the counters its relay and consumers keep, and what it asks of the database and
JetStream at that moment (the outbox's backlog and the age of its oldest event, each consumer's
pending and unacknowledged events), on the service's own event loop and bounded in time. What
cannot be read in time is left out of that scrape; the rest is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from sqlalchemy.ext.asyncio import AsyncEngine

    from loyalty_kit.inbox import EventConsumer
    from loyalty_kit.outbox import OutboxRelay

PROBE_TIMEOUT_SECONDS = 3.0  # what a scrape waits for the outbox and consumer figures
BACKLOG_COUNT_LIMIT = 1_000_000  # the outbox backlog is counted up to this many rows


@dataclass
class Watched:
    engine: AsyncEngine | None
    js: JetStreamContext | None
    relay: OutboxRelay | None
    consumers: Sequence[EventConsumer]
    loop: asyncio.AbstractEventLoop


@dataclass
class Probe:
    """What a scrape asks the database and JetStream for (None: it could not be read)."""

    backlog: tuple[int, float] | None = None
    consumers: dict[str, tuple[int, int]] = field(default_factory=dict)


class RuntimeCollector(Collector):
    """Figures read from the running service when Prometheus scrapes it."""

    def __init__(self) -> None:
        self.watched: Watched | None = None

    def describe(self) -> Iterable[Metric]:
        return ()  # the families vary with what the service runs

    def collect(self) -> Iterable[Metric]:
        watched = self.watched
        if watched is None:
            return
        yield from self._pool(watched)
        yield from self._counted(watched)
        probe = self._probe(watched)
        if probe.backlog is not None:
            backlog, oldest = probe.backlog
            yield GaugeMetricFamily(
                "loyalty_outbox_backlog_events",
                "Events in the outbox not yet published.",
                value=backlog,
            )
            yield GaugeMetricFamily(
                "loyalty_outbox_lag_seconds",
                "Age of the oldest event in the outbox not yet published (0 when none).",
                value=oldest,
            )
        if probe.consumers:
            pending = GaugeMetricFamily(
                "loyalty_consumer_pending_events",
                "Events on a consumer's stream not yet delivered to it.",
                labels=["consumer"],
            )
            unacked = GaugeMetricFamily(
                "loyalty_consumer_unacknowledged_events",
                "Events delivered to a consumer and not yet acknowledged.",
                labels=["consumer"],
            )
            for name, (waiting, delivered) in probe.consumers.items():
                pending.add_metric([name], waiting)
                unacked.add_metric([name], delivered)
            yield pending
            yield unacked

    def _pool(self, watched: Watched) -> Iterator[Metric]:
        if watched.engine is None:
            return
        pool: Any = watched.engine.sync_engine.pool
        connections = GaugeMetricFamily(
            "loyalty_db_pool_connections",
            "Database connections of the service's pool, by state (in_use, idle).",
            labels=["state"],
        )
        connections.add_metric(["in_use"], pool.checkedout())
        connections.add_metric(["idle"], pool.checkedin())
        yield connections
        limit = pool.size() + max(getattr(pool, "_max_overflow", 0), 0)
        yield GaugeMetricFamily(
            "loyalty_db_pool_max_connections", "Most connections the pool opens.", value=limit
        )
        yield CounterMetricFamily(
            "loyalty_db_pool_waits",
            "Check-outs that found every connection in use and waited for one.",
            value=getattr(pool, "waits", 0),
        )
        yield CounterMetricFamily(
            "loyalty_db_pool_wait_seconds",
            "Time check-outs spent waiting for a connection.",
            value=getattr(pool, "wait_seconds", 0.0),
        )
        yield CounterMetricFamily(
            "loyalty_db_pool_timeouts",
            "Check-outs that waited past the pool's timeout (answered UNAVAILABLE).",
            value=getattr(pool, "timeouts", 0),
        )

    def _counted(self, watched: Watched) -> Iterator[Metric]:
        if watched.relay is not None:
            yield CounterMetricFamily(
                "loyalty_outbox_published_events",
                "Events the outbox relay published to JetStream.",
                value=watched.relay.published,
            )
        if not watched.consumers:
            return
        outcomes = CounterMetricFamily(
            "loyalty_consumer_events",
            "Events a consumer took, by outcome: handled, duplicate (already in its inbox), "
            "skipped (a type it does not follow).",
            labels=["consumer", "outcome"],
        )
        parked = CounterMetricFamily(
            "loyalty_events_dead_lettered",
            "Events a consumer gave up on and parked in the dead-letter stream.",
            labels=["consumer"],
        )
        for consumer in watched.consumers:
            outcomes.add_metric([consumer.name, "handled"], consumer.handled)
            outcomes.add_metric([consumer.name, "duplicate"], consumer.duplicates)
            outcomes.add_metric([consumer.name, "skipped"], consumer.skipped)
            parked.add_metric([consumer.name], consumer.dead_lettered)
        yield outcomes
        yield parked

    def _probe(self, watched: Watched) -> Probe:
        """The outbox backlog and the consumers' positions, asked on the service's own event
        loop (its engine and NATS connection live there), bounded in time."""
        if watched.loop.is_closed() or threading.get_ident() == _loop_thread(watched.loop):
            return Probe()
        try:
            future = asyncio.run_coroutine_threadsafe(_probe(watched), watched.loop)
        except RuntimeError:  # the loop is stopping
            return Probe()
        try:
            return future.result(PROBE_TIMEOUT_SECONDS)
        except Exception:
            future.cancel()
            return Probe()


def _loop_thread(loop: asyncio.AbstractEventLoop) -> int | None:
    return getattr(loop, "_thread_id", None)


async def _probe(watched: Watched) -> Probe:
    from sqlalchemy import text

    from loyalty_kit import events

    probe = Probe()
    if watched.engine is not None and watched.relay is not None:
        with contextlib.suppress(Exception):
            async with watched.engine.connect() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)),"
                            " 0) FROM (SELECT created_at FROM kit_outbox WHERE published_at IS NULL"
                            " ORDER BY seq LIMIT :n) AS unpublished"
                        ),
                        {"n": BACKLOG_COUNT_LIMIT},
                    )
                ).one()
                probe.backlog = (int(row[0]), max(float(row[1]), 0.0))
    if watched.js is not None:
        for consumer in watched.consumers:
            stream = events.stream_name(consumer.namespace, consumer.source_service)
            with contextlib.suppress(Exception):
                info = await watched.js.consumer_info(stream, consumer.durable)
                probe.consumers[consumer.name] = (
                    int(info.num_pending or 0),
                    int(info.num_ack_pending or 0),
                )
    return probe
