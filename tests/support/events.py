"""Publishing an event to JetStream as its service's outbox relay would."""

from __future__ import annotations

import uuid

from google.protobuf.message import Message
from loyalty_kit import events
from loyalty_kit.settings import Settings


async def publish(settings: Settings, service: str, event: Message, event_id: str = "") -> str:
    """Publish `event` on the stream of `service` with the kit's headers; its event id."""
    event_id = event_id or str(uuid.uuid4())
    client = await events.connect(settings.nats_url, f"{service}-test-publisher")
    try:
        js = client.jetstream()
        await events.ensure_stream(js, settings.event_namespace, service)
        await js.publish(
            events.event_subject(event, settings.event_namespace),
            event.SerializeToString(),
            headers={
                events.MSG_ID_HEADER: event_id,
                events.EVENT_ID_HEADER: event_id,
                events.EVENT_TYPE_HEADER: event.DESCRIPTOR.full_name,
            },
        )
    finally:
        await client.close()
    return event_id
