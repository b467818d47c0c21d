"""Publishing an event to JetStream as its service's outbox relay would, holding a service's
relay back to read what it wrote but has not published, and reading what a service published."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from typing import Any

import asyncpg
from google.protobuf.message import Message
from loyalty_kit import events
from loyalty_kit.db import asyncpg_params
from loyalty_kit.outbox import RELAY_LOCK_KEY
from loyalty_kit.settings import Settings
from nats.js.api import AckPolicy, ConsumerConfig
from sqlalchemy.engine import make_url


async def publish(
    settings: Settings, service: str, event: Message, event_id: str = "", msg_id: str = ""
) -> str:
    """Publish `event` on the stream of `service` with the kit's headers; its event id.
    `msg_id` other than the event id: JetStream keeps a second copy of the same event (as a
    relay that published it again after its duplicate window would)."""
    event_id = event_id or str(uuid.uuid4())
    client = await events.connect(settings.nats_url, f"{service}-test-publisher")
    try:
        js = client.jetstream()
        await events.ensure_stream(js, settings.event_namespace, service)
        await js.publish(
            events.event_subject(event, settings.event_namespace),
            event.SerializeToString(),
            headers={
                events.MSG_ID_HEADER: msg_id or event_id,
                events.EVENT_ID_HEADER: event_id,
                events.EVENT_TYPE_HEADER: event.DESCRIPTOR.full_name,
            },
        )
    finally:
        await client.close()
    return event_id


async def stream_messages(js: Any, subject: str, stream: str) -> list[Any]:
    """Every message of `subject` on `stream` there is now, read through an ephemeral consumer
    that takes no acknowledgements (one that did would stop delivering after its 1,000
    unacknowledged messages, and a reader saw only a long stream's first 1,000) until it has
    none pending (a fetch that times out on a loaded machine does not end the read)."""
    found: list[Any] = []
    sub = await js.pull_subscribe(
        subject, stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    try:
        while True:
            try:
                found.extend(await sub.fetch(1000, timeout=0.5))
            except TimeoutError:
                if (await sub.consumer_info()).num_pending == 0:
                    return found
    finally:
        await sub.unsubscribe()


async def published(
    settings: Settings,
    service: str,
    kind: type[Message],
    member_ids: Collection[str],
    at_least: int = 1,
    settle_seconds: float = 0.5,
    members_of: Callable[[Any], Iterable[str]] = lambda e: [getattr(e, "member_id", "")],
) -> dict[str, list[Any]]:
    """The `kind` events of `service`'s stream about each member, read once every member has
    `at_least` of them and again `settle_seconds` later (so a late duplicate is seen too).
    `members_of`: the members an event is about (an event of many members: each of them)."""
    client = await events.connect(settings.nats_url, f"{service}-test-reader")
    js = client.jetstream()
    stream = events.stream_name(settings.event_namespace, service)
    subject = events.subject_of(kind.DESCRIPTOR.full_name, settings.event_namespace)
    wanted = set(member_ids)

    async def read() -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {m: [] for m in wanted}
        for msg in await stream_messages(js, subject, stream):
            event = kind.FromString(msg.data)
            for member_id in set(members_of(event)) & wanted:
                found[member_id].append(event)
        return found

    try:
        for _ in range(100):
            found = await read()
            if all(len(seen) >= at_least for seen in found.values()):
                await asyncio.sleep(settle_seconds)
                return await read()
            await asyncio.sleep(0.1)
    finally:
        await client.close()
    return found


@contextlib.asynccontextmanager
async def relay_held(settings: Settings, service: str) -> AsyncIterator[asyncpg.Connection]:
    """`service`'s outbox relay held back (it takes this lock for each batch): what the service
    writes meanwhile stays unpublished until the block ends, then goes out as always. Yields a
    connection to the service's database, to read its outbox with `unpublished`."""
    url = make_url(str(settings.service_database_url(service)))
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK_KEY)
        try:
            yield conn
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_KEY)
    finally:
        await conn.close()


async def unpublished(
    conn: asyncpg.Connection, kinds: Iterable[type[Message]], member_id: str
) -> list[Message]:
    """The events of `kinds` about `member_id` still in the outbox, in the order written."""
    by_name = {kind.DESCRIPTOR.full_name: kind for kind in kinds}
    rows = await conn.fetch(
        "SELECT event_type, payload FROM kit_outbox "
        "WHERE published_at IS NULL AND event_type = ANY($1::text[]) ORDER BY seq",
        list(by_name),
    )
    found = [by_name[row["event_type"]].FromString(bytes(row["payload"])) for row in rows]
    return [event for event in found if getattr(event, "member_id", "") == member_id]
