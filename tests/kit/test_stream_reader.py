"""The tests' reader of a service's stream sees every event on it, however long the stream: a
reader that left its messages unacknowledged stopped at the first 1,000 (JetStream's limit of
unacknowledged messages), and events of later tests were never found."""

from __future__ import annotations

import uuid

from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty_kit import events
from loyalty_kit.settings import Settings

from tests.support.events import stream_messages

EVENTS = 2_500


async def test_a_stream_longer_than_the_unacknowledged_limit_is_read_whole(
    settings: Settings,
) -> None:
    namespace = f"reader{uuid.uuid4().hex[:8]}"
    client = await events.connect(settings.nats_url, "stream-reader-test")
    try:
        js = client.jetstream()
        await events.ensure_stream(js, namespace, "tiers")
        subject = events.subject_of(tier_events.TierChanged.DESCRIPTOR.full_name, namespace)
        acks = [
            await js.publish_async(
                subject, tier_events.TierChanged(member_id=str(n)).SerializeToString()
            )
            for n in range(EVENTS)
        ]
        for ack in acks:
            await ack
        read = await stream_messages(js, subject, events.stream_name(namespace, "tiers"))
        assert [tier_events.TierChanged.FromString(m.data).member_id for m in read] == [
            str(n) for n in range(EVENTS)
        ]
    finally:
        await js.delete_stream(events.stream_name(namespace, "tiers"))
        await client.close()
