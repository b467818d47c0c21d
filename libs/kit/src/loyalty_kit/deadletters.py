"""The dead-letter stream: events a consumer gave up on, kept with why, to be replayed or dropped.

    loyalty-events dead-letters list [--consumer NAME] [--json]
    loyalty-events dead-letters replay (--all | --consumer NAME | SEQ ...) [--force]
    loyalty-events dead-letters drop SEQ ...

Replaying republishes the event, bytes and headers as they were, on its original subject (with a
new JetStream message id, so the duplicate window lets it through) and removes it from the
dead-letter stream. Every consumer of that subject sees it again; those that handled it the
first time find its id in their inbox and only acknowledge it, so only the consumer that failed
handles it. That holds while the inboxes remember the id (`LOYALTY_INBOX_RETENTION_DAYS`): an
older event is refused unless `--force` says the other consumers of its subject may handle it
again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from loyalty_kit import events
from loyalty_kit.logs import get_logger

log = get_logger("loyalty.deadletters")


@dataclass(frozen=True)
class Parked:
    """One event in the dead-letter stream."""

    seq: int
    consumer: str
    subject: str
    event_id: str
    event_type: str
    attempts: int
    reason: str
    failed_at: str
    published_at: str


@dataclass(frozen=True)
class Replayed:
    seq: int
    event_id: str
    outcome: str  # "replayed" | "refused: ..."


def _stream(namespace: str) -> str:
    return events.stream_name(namespace, events.DEAD_LETTERS)


async def parked(js: JetStreamContext, namespace: str, consumer: str | None = None) -> list[Parked]:
    """Every parked event (of one consumer), oldest first."""
    stream = _stream(namespace)
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return []
    found: list[Parked] = []
    if not info.state.messages:
        return found
    subject = events.dead_letter_subject(namespace, consumer) if consumer else None
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            raw = await js.get_msg(stream, seq)
        except NotFoundError:  # replayed or dropped
            continue
        if subject and raw.subject != subject:
            continue
        headers = raw.headers or {}
        found.append(
            Parked(
                seq=seq,
                consumer=headers.get(events.DEAD_CONSUMER_HEADER, ""),
                subject=headers.get(events.DEAD_SUBJECT_HEADER, ""),
                event_id=headers.get(events.EVENT_ID_HEADER, ""),
                event_type=headers.get(events.EVENT_TYPE_HEADER, ""),
                attempts=int(headers.get(events.DEAD_ATTEMPTS_HEADER, "0") or 0),
                reason=headers.get(events.DEAD_REASON_HEADER, ""),
                failed_at=headers.get(events.DEAD_FAILED_AT_HEADER, ""),
                published_at=headers.get(events.DEAD_PUBLISHED_AT_HEADER, ""),
            )
        )
    return found


async def replay(
    js: JetStreamContext,
    namespace: str,
    seqs: Sequence[int],
    *,
    inbox_retention: timedelta,
    force: bool = False,
    now: datetime | None = None,
) -> list[Replayed]:
    """Republish the parked events `seqs` on their subjects and remove them from the stream."""
    stream = _stream(namespace)
    now = now or datetime.now(UTC)
    results: list[Replayed] = []
    for seq in seqs:
        try:
            raw = await js.get_msg(stream, seq)
        except NotFoundError:
            results.append(Replayed(seq, "", "refused: no such parked event"))
            continue
        headers = dict(raw.headers or {})
        event_id = headers.get(events.EVENT_ID_HEADER, "")
        subject = headers.get(events.DEAD_SUBJECT_HEADER, "")
        published = headers.get(events.DEAD_PUBLISHED_AT_HEADER, "")
        if not subject:
            results.append(Replayed(seq, event_id, "refused: no original subject"))
            continue
        if not force and published and now - datetime.fromisoformat(published) > inbox_retention:
            results.append(
                Replayed(
                    seq,
                    event_id,
                    "refused: older than the inbox retention (other consumers may have "
                    "forgotten handling it; --force to replay anyway)",
                )
            )
            continue
        original = {
            key: value
            for key, value in headers.items()
            if not key.startswith("Loyalty-Dead-Letter-") and key != events.MSG_ID_HEADER
        }
        original[events.MSG_ID_HEADER] = f"{event_id}:replay:{seq}"
        await js.publish(subject, raw.data or b"", headers=original)
        await js.delete_msg(stream, seq)
        log.info("dead letter replayed", seq=seq, event_id=event_id, subject=subject)
        results.append(Replayed(seq, event_id, "replayed"))
    return results


async def drop(js: JetStreamContext, namespace: str, seqs: Sequence[int]) -> list[int]:
    """Remove parked events for good; answers the sequences that were there."""
    dropped: list[int] = []
    for seq in seqs:
        try:
            await js.delete_msg(_stream(namespace), seq)
        except NotFoundError:
            continue
        log.warning("dead letter dropped", seq=seq)
        dropped.append(seq)
    return dropped
