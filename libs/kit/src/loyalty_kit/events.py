"""Events on NATS JetStream: naming, streams and connections.

An event is a protobuf message defined in protos/. Its subject is its full proto name with the
first token replaced by the configured namespace: `loyalty.points.v1.PointsEarned`. Each service
owns one stream, `LOYALTY_POINTS`, holding `loyalty.points.v1.>`. The event id travels as the
JetStream message id (`Nats-Msg-Id`), so a re-published event is dropped by the server's
duplicate window and consumers can de-duplicate by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import nats
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

EVENT_TYPE_HEADER = "Loyalty-Event-Type"
EVENT_ID_HEADER = "Loyalty-Event-Id"  # what consumers de-duplicate by
MSG_ID_HEADER = "Nats-Msg-Id"  # the same id, for JetStream's duplicate window
DUPLICATE_WINDOW_SECONDS = 300.0


def subject_of(message_type: str, namespace: str) -> str:
    """`loyalty.points.v1.PointsEarned` -> `<namespace>.points.v1.PointsEarned`."""
    _, rest = message_type.split(".", 1)
    return f"{namespace}.{rest}"


def event_subject(message: Message, namespace: str) -> str:
    return subject_of(message.DESCRIPTOR.full_name, namespace)


def stream_name(namespace: str, service: str) -> str:
    return f"{namespace}_{service}".upper().replace("-", "_")


def stream_subjects(namespace: str, service: str) -> list[str]:
    return [f"{namespace}.{service}.v1.>"]


@dataclass(frozen=True)
class EventMeta:
    event_id: str
    event_type: str
    subject: str
    published_at: datetime | None = None


async def connect(url: str, name: str) -> NATS:
    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
    )


async def ensure_stream(js: JetStreamContext, namespace: str, service: str) -> str:
    """Create the service's stream if missing (idempotent: owner and consumers both call it)."""
    name = stream_name(namespace, service)
    config = StreamConfig(
        name=name,
        subjects=stream_subjects(namespace, service),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
    return name
