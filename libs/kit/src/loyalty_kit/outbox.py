"""Transactional outbox and its relay to NATS JetStream.

A service writes events with `Outbox.add` in the same transaction as the state change: both
commit or neither does, so a rolled-back change publishes nothing and a committed one is never
lost. The relay publishes unpublished rows in order, using the event id as the JetStream message
id, then marks them published. If it dies between publishing and marking, the next run publishes
the same ids again and JetStream's duplicate window drops them: consumers see each event once.

Each row keeps, in its `headers`, the request id and trace context of the work that wrote it
(`loyalty_kit.correlation`); the relay publishes them as the event's NATS headers, so consumers
continue the request's trace and log lines.

One relay publishes at a time per database (a transaction-scoped advisory lock), so replicas of a
service can all run the relay and order is kept. It wakes on NOTIFY from the outbox trigger and
polls as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from google.protobuf.message import Message
from nats.js import JetStreamContext
from sqlalchemy import Row, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from loyalty_kit import metrics
from loyalty_kit.correlation import event_headers
from loyalty_kit.db import asyncpg_params, database_unavailable, driver_connection
from loyalty_kit.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    MSG_ID_HEADER,
    bus_unavailable,
    event_subject,
)
from loyalty_kit.logs import get_logger
from loyalty_kit.tables import OUTBOX_CHANNEL

log = get_logger("loyalty.outbox")

RELAY_LOCK_KEY = 0x10_0B_0C  # one relay per database at a time
PUBLISH_ACK_TIMEOUT_SECONDS = 10.0


class Outbox:
    """Writes events into the caller's transaction."""

    def __init__(self, session: AsyncSession, namespace: str) -> None:
        self.session = session
        self.namespace = namespace

    async def add(self, message: Message, *, event_id: uuid.UUID | None = None) -> uuid.UUID:
        event_id = event_id or uuid.uuid4()
        subject = event_subject(message, self.namespace)
        conn = await driver_connection(self.session)
        with event_headers([subject]) as headers:
            await conn.execute(
                "INSERT INTO kit_outbox (event_id, subject, event_type, payload, headers) "
                "VALUES ($1, $2, $3, $4, $5::jsonb)",
                event_id,
                subject,
                message.DESCRIPTOR.full_name,
                message.SerializeToString(deterministic=True),
                json.dumps(headers),
            )
        metrics.written(self.session, (message,))
        return event_id

    async def add_all(self, messages: Sequence[Message]) -> None:
        """The events a unit of work collected: one row as `add` writes it, more in one
        statement, none: nothing."""
        if len(messages) == 1:
            await self.add(messages[0])
        else:
            await self.add_many(messages)

    async def add_many(
        self, messages: Sequence[Message], *, event_ids: Sequence[uuid.UUID] | None = None
    ) -> None:
        """Many events in one statement (batch jobs: a chunk's events at once; a unit of work's
        events of several kinds), with `event_ids` when given (one a message, as `add` takes
        one). Each subject's events are written under a PRODUCER span of their own
        (`create <subject>`), whose context their rows carry: an earn's PointsEarned keeps its
        own span beside the ledger event written with it."""
        if not messages:
            return
        if event_ids is not None and len(event_ids) != len(messages):
            raise ValueError("one event id a message")
        subjects = [event_subject(m, self.namespace) for m in messages]
        by_subject: dict[str, str] = {}
        for subject in dict.fromkeys(subjects):
            with event_headers([s for s in subjects if s == subject]) as headers:
                by_subject[subject] = json.dumps(headers)
        conn = await driver_connection(self.session)
        await conn.execute(
            "INSERT INTO kit_outbox (event_id, subject, event_type, payload, headers) "
            "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[])",
            list(event_ids) if event_ids is not None else [uuid.uuid4() for _ in messages],
            subjects,
            [m.DESCRIPTOR.full_name for m in messages],
            [m.SerializeToString(deterministic=True) for m in messages],
            [by_subject[s] for s in subjects],
        )
        metrics.written(self.session, messages)


def _stored(headers: Any) -> dict[str, str]:
    """A row's stored headers (the request's context), as the driver hands the JSON back."""
    if isinstance(headers, str | bytes):
        headers = json.loads(headers)
    return {str(k): str(v) for k, v in (headers or {}).items()}


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        *,
        listen_url: URL | None = None,
        batch_size: int = 200,
        poll_seconds: float = 1.0,
        linger_seconds: float = 0.0,
    ) -> None:
        self.engine = engine
        self.js = js
        self.listen_url = listen_url if listen_url is not None else engine.url
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.linger_seconds = linger_seconds
        self._wake = asyncio.Event()
        self.published = 0

    async def publish_pending(self) -> int:
        """Publish what is pending now, batch by batch; returns how many were published."""
        total = 0
        while True:
            count = await self._publish_batch()
            total += count
            if count < self.batch_size:
                return total

    async def _publish_batch(self) -> int:
        async with self.engine.begin() as conn:
            got = await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RELAY_LOCK_KEY}
            )
            if not got:
                return 0
            rows = (
                await conn.execute(
                    text(
                        "SELECT seq, event_id, subject, event_type, payload, headers "
                        "FROM kit_outbox WHERE published_at IS NULL ORDER BY seq LIMIT :n"
                    ),
                    {"n": self.batch_size},
                )
            ).all()
            if not rows:
                return 0
            await self._send(rows)
            await self._mark(conn, rows)
        self.published += len(rows)
        return len(rows)

    async def _send(self, rows: Sequence[Row[Any]]) -> None:
        # Pipelined: all publishes go out in order, then every acknowledgement is awaited
        # before the rows are marked. A missing ack fails the batch, which is retried.
        acks = [
            await self.js.publish_async(
                row.subject,
                bytes(row.payload),
                headers={
                    **_stored(row.headers),
                    MSG_ID_HEADER: str(row.event_id),
                    EVENT_ID_HEADER: str(row.event_id),
                    EVENT_TYPE_HEADER: row.event_type,
                },
            )
            for row in rows
        ]
        await asyncio.wait_for(asyncio.gather(*acks), PUBLISH_ACK_TIMEOUT_SECONDS)

    async def _mark(self, conn: AsyncConnection, rows: Sequence[Row[Any]]) -> None:
        await conn.execute(
            text("UPDATE kit_outbox SET published_at = :now WHERE seq = ANY(:seqs)"),
            {"now": datetime.now(UTC), "seqs": [r.seq for r in rows]},
        )

    async def run(self) -> None:
        """Relay until cancelled."""
        listener = await self._listen()
        listens = listener is not None
        try:
            while True:
                if listens and (listener is None or listener.is_closed()):
                    # The LISTEN connection died with the database: listen again once it is back.
                    listener = await self._listen(quiet=True)
                try:
                    await self.publish_pending()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    if database_unavailable(error):
                        log.warning("outbox relay: database unavailable; retrying")
                    elif bus_unavailable(error) or isinstance(error, TimeoutError):
                        # No acknowledgement in time, or no stream leader yet (a NATS node
                        # lost): the batch stays unpublished and goes again; duplicates of
                        # what did get through are dropped by the duplicate window.
                        log.warning(
                            "outbox relay: event bus unavailable; retrying",
                            error=type(error).__name__,
                        )
                    else:
                        log.exception("outbox relay failed; retrying")
                    await asyncio.sleep(self.poll_seconds)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                # Under load commits arrive back to back: a short linger lets one batch carry
                # many of them instead of one relay round per commit.
                if self.linger_seconds:
                    await asyncio.sleep(self.linger_seconds)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _listen(self, *, quiet: bool = False) -> Any:
        if self.listen_url is None:
            return None
        try:
            conn = await asyncpg.connect(**asyncpg_params(self.listen_url), timeout=5)
            await conn.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
            return conn
        except Exception:
            if not quiet:
                log.warning("outbox relay cannot LISTEN; polling only")
            return None
