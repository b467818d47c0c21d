"""Each admitted entry is announced (JourneyEntered) with its group, for insights to measure the
journey's uplift: a held-out member's entry as control, an acted-on one's as treatment, an
entry its conditions skip not at all, and a redelivered trigger's entry once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.engagement.v1 import events_pb2 as engagement_events
from loyalty.tiers.v1 import events_pb2 as tiers_events
from loyalty_kit.timestamps import timestamp

from tests.engagement.conftest import Engagement, until
from tests.support.events import publish, published


def upgraded(member_id: str, tier: str) -> tiers_events.TierChanged:
    return tiers_events.TierChanged(
        member_id=member_id,
        from_tier="silver",
        to_tier=tier,
        reason="qualified",
        effective_at=timestamp(datetime.now(UTC)),
    )


async def journey(engagement: Engagement, tier: str, share: float, **conditions: object) -> str:
    made = await engagement.journey(
        pb.Journey(
            display_name="announced",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            conditions=pb.Conditions(**conditions),  # type: ignore[arg-type]
            steps=[pb.Step(change_tags=pb.ChangeTags(add_tags=["campaign:announced"]))],
            control_share=share,
        )
    )
    return made.name


async def test_entries_are_announced_with_their_group_once(engagement: Engagement) -> None:
    held_tier, acted_tier = f"h-{uuid.uuid4().hex[:8]}", f"a-{uuid.uuid4().hex[:8]}"
    held = await journey(engagement, held_tier, 1.0)
    acted = await journey(engagement, acted_tier, 0.0)
    skipped = await journey(engagement, acted_tier, 0.0, tiers=["diamond-never"])
    held_member, acted_member = await engagement.member(), await engagement.member()
    event_id = await publish(engagement.settings, "tiers", upgraded(held_member, held_tier))
    await publish(engagement.settings, "tiers", upgraded(held_member, held_tier), event_id)
    await publish(engagement.settings, "tiers", upgraded(acted_member, acted_tier))
    await until(
        lambda: engagement.entries(acted, acted_member),
        lambda e: [x.state for x in e] == [pb.ENTRY_STATE_COMPLETED],
    )
    # Each event is handled on its own: the held member's may come after the acted one's.
    entries = await until(
        lambda: engagement.entries(held, held_member),
        lambda e: [x.state for x in e] == [pb.ENTRY_STATE_HELD_OUT],
    )
    assert [e.state for e in entries] == [pb.ENTRY_STATE_HELD_OUT]

    announced = await published(
        engagement.settings,
        "engagement",
        engagement_events.JourneyEntered,
        [held_member, acted_member],
    )
    assert [(e.journey_id, e.control) for e in announced[held_member]] == [
        (held.removeprefix("journeys/"), True)
    ]
    assert [(e.journey_id, e.control) for e in announced[acted_member]] == [
        (acted.removeprefix("journeys/"), False)
    ]
    assert announced[held_member][0].entry_id == entries[0].name.rsplit("/", 1)[-1]
    assert announced[held_member][0].entered_at == entries[0].enter_time
    assert skipped.removeprefix("journeys/") not in {e.journey_id for e in announced[acted_member]}
