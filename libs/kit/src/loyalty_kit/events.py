"""Events on NATS JetStream: naming, streams and connections.

An event is a protobuf message defined in protos/. Its subject is its full proto name with the
first token replaced by the configured namespace: `loyalty.points.v1.PointsEarned`. Each service
owns one stream, `LOYALTY_POINTS`, holding `loyalty.points.v1.>`. The event id travels as the
JetStream message id (`Nats-Msg-Id`), so a re-published event is dropped by the server's
duplicate window and consumers can de-duplicate by it.

Streams are bounded (`StreamLimits`: max age, max bytes, replicas; see docs/operations.md for the
sizing). An event a consumer cannot handle is parked, after a bounded number of attempts, in the
dead-letter stream `LOYALTY_DEADLETTERS` (`loyalty.deadletters.v1.<consumer>`) with its reason, and
can be replayed from there (`loyalty-events dead-letters`, see `loyalty_kit.deadletters`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from loyalty_kit.logs import get_logger

if TYPE_CHECKING:
    from loyalty_kit.settings import Settings

log = get_logger("loyalty.events")

EVENT_TYPE_HEADER = "Loyalty-Event-Type"
EVENT_ID_HEADER = "Loyalty-Event-Id"  # what consumers de-duplicate by
MSG_ID_HEADER = "Nats-Msg-Id"  # the same id, for JetStream's duplicate window
DUPLICATE_WINDOW_SECONDS = 300.0
DEAD_LETTERS = "deadletters"  # the dead-letter stream's token: <ns>.deadletters.v1.<consumer>
# What a parked event carries besides its own headers (EVENT_ID_HEADER, EVENT_TYPE_HEADER).
DEAD_CONSUMER_HEADER = "Loyalty-Dead-Letter-Consumer"
DEAD_SUBJECT_HEADER = "Loyalty-Dead-Letter-Subject"
DEAD_REASON_HEADER = "Loyalty-Dead-Letter-Reason"
DEAD_ATTEMPTS_HEADER = "Loyalty-Dead-Letter-Attempts"
DEAD_FAILED_AT_HEADER = "Loyalty-Dead-Letter-Failed-At"
DEAD_PUBLISHED_AT_HEADER = "Loyalty-Dead-Letter-Published-At"


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


def server_urls(url: str) -> list[str]:
    """`LOYALTY_NATS_URL` as servers: one URL, or a cluster's nodes comma-separated."""
    return [part.strip() for part in url.split(",") if part.strip()]


# A connection to a node that died without closing it (a host lost, not a process killed) is
# noticed after PING_INTERVAL_SECONDS * MAX_OUTSTANDING_PINGS, then the client moves on to
# another node of the cluster (those named, and those the cluster tells it about).
PING_INTERVAL_SECONDS = 10
MAX_OUTSTANDING_PINGS = 3


# What the bus answers while it cannot take or hand out events for a moment: the connection is
# down or moving to another node, or a stream or consumer has no leader (a node was lost and its
# peers are electing one). Worth retrying, as a database outage is; not a failed event.
_BUS_UNAVAILABLE = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.TimeoutError,
    nats.errors.NoServersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


def bus_unavailable(error: BaseException) -> bool:
    """True when `error` means NATS cannot be used now (see _BUS_UNAVAILABLE)."""
    return isinstance(error, _BUS_UNAVAILABLE) or isinstance(error.__cause__, _BUS_UNAVAILABLE)


async def connect(url: str, name: str) -> NATS:
    """A connection that keeps reconnecting, to any node of a cluster, for as long as it lives;
    publishes made meanwhile are buffered and sent once it is back. Losing a node is a warning
    (the connection moves on); anything else the client reports is an error."""

    async def on_error(error: Exception) -> None:
        if bus_unavailable(error) or isinstance(error, OSError):
            log.warning("nats: connection lost; reconnecting", connection=name, error=repr(error))
        else:
            log.error("nats: client error", connection=name, exc_info=error)

    async def on_disconnected() -> None:
        log.warning("nats: disconnected", connection=name)

    async def on_reconnected() -> None:
        server = client.connected_url.netloc if client.connected_url else ""
        log.info("nats: reconnected", connection=name, server=server)

    client = await nats.connect(
        server_urls(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        ping_interval=PING_INTERVAL_SECONDS,
        max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    return client


def dead_letter_subject(namespace: str, consumer: str) -> str:
    return f"{namespace}.{DEAD_LETTERS}.v1.{consumer}"


@dataclass(frozen=True)
class StreamLimits:
    """How much a stream keeps. The oldest events go first when a limit is reached, so size them
    for the longest consumer outage to be survived (docs/operations.md)."""

    max_age_seconds: float = 14 * 86400.0
    max_bytes: int = -1  # by age only (JetStream sets a byte limit aside on its store)
    replicas: int = 1

    @classmethod
    def of_events(cls, settings: Settings) -> StreamLimits:
        return cls(
            settings.event_stream_max_age_days * 86400.0,
            settings.event_stream_max_bytes,
            settings.event_stream_replicas,
        )

    @classmethod
    def of_dead_letters(cls, settings: Settings) -> StreamLimits:
        return cls(
            settings.dead_letter_max_age_days * 86400.0,
            settings.dead_letter_max_bytes,
            settings.event_stream_replicas,
        )


async def ensure_stream(
    js: JetStreamContext, namespace: str, service: str, limits: StreamLimits | None = None
) -> str:
    """Create the service's stream if missing, or bring its limits up to date (idempotent: its
    owner and its consumers all call it with the same settings)."""
    limits = limits or StreamLimits()
    name = stream_name(namespace, service)
    config = StreamConfig(
        name=name,
        subjects=stream_subjects(namespace, service),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=limits.max_age_seconds,
        max_bytes=limits.max_bytes,
        discard=DiscardPolicy.OLD,
        num_replicas=limits.replicas,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
    return name


@dataclass(frozen=True)
class ConsumerLag:
    """How far a durable consumer is behind its stream."""

    stream: str
    consumer: str
    pending: int  # in the stream, not yet delivered to it
    unacknowledged: int  # delivered, not yet acknowledged (being handled, or to be redelivered)
    redelivered: int
    last_active: datetime | None

    @property
    def behind(self) -> int:
        return self.pending + self.unacknowledged


async def consumer_lag(js: JetStreamContext, namespace: str) -> list[ConsumerLag]:
    """Every durable consumer on the namespace's streams, with its lag (what operators watch:
    a consumer paused or slow shows events piling up here, and draining when it catches up)."""
    prefix = f"{namespace}_".upper().replace("-", "_")
    found: list[ConsumerLag] = []
    for stream in await js.streams_info():
        name = stream.config.name or ""
        if not name.startswith(prefix):
            continue
        for info in await js.consumers_info(name):
            found.append(
                ConsumerLag(
                    stream=name,
                    consumer=info.name,
                    pending=info.num_pending or 0,
                    unacknowledged=info.num_ack_pending or 0,
                    redelivered=info.num_redelivered or 0,
                    last_active=info.delivered.last_active if info.delivered else None,
                )
            )
    return sorted(found, key=lambda lag: (lag.stream, lag.consumer))
