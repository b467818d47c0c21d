"""The Huayue demo's journeys, made through the running engagement service as the demo loader
makes them: valid, active, and made once however often the demo is loaded."""

from __future__ import annotations

import contextlib

import grpc
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty_devstack.demo_journeys import JOURNEYS, ensure_journeys

from tests.engagement.conftest import Engagement, rid


async def test_the_demo_journeys_are_made_once(engagement: Engagement) -> None:
    client = engagement.as_()
    try:
        first = await ensure_journeys(client)
        again = await ensure_journeys(client)
        assert first.what == again.what == "3 journeys"
        assert not again.loaded
        listed = await client.ListJourneys(pb.ListJourneysRequest(page_size=200))
        demo = {j.display_name: j for j in listed.journeys}
        found = [demo[journey.display_name] for _key, journey in JOURNEYS]
        assert [j.state for j in found] == [pb.JOURNEY_STATE_ACTIVE] * 3
        win_back, expiring, cinema = found
        assert (win_back.trigger.kind, win_back.trigger.days) == (pb.TRIGGER_KIND_INACTIVE, 90)
        assert [s.WhichOneof("action") for s in win_back.steps] == [
            "issue_coupon",
            "delay",
            "send_message",
        ]
        assert win_back.steps[1].delay.seconds == 14 * 86400
        assert (win_back.quiet_hours.start, win_back.quiet_hours.end) == ("21:00", "09:00")
        assert expiring.trigger.kind == pb.TRIGGER_KIND_POINTS_EXPIRING
        assert expiring.trigger.days == 30
        assert (cinema.trigger.kind, cinema.trigger.unit) == (pb.TRIGGER_KIND_PURCHASE, "hotel")
        assert cinema.steps[0].issue_coupon.unit == "cinema"
    finally:
        # Other tests' events must not keep entering them.
        listed = await client.ListJourneys(pb.ListJourneysRequest(page_size=200))
        names = {journey.display_name for _key, journey in JOURNEYS}
        for journey in listed.journeys:
            if journey.display_name in names:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await client.PauseJourney(
                        pb.PauseJourneyRequest(name=journey.name, request_id=rid())
                    )
