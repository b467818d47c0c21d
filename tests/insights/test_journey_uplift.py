"""A journey's uplift end to end: an operator's journey at engagement holds out half of its
members, engagement announces each entry (JourneyEntered, treatment or control), the members
buy at points, and insights answers GetJourneyUplift over a real channel (and HTTP through the
gateway) from those facts: the members it acted on bought more than the members held out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from loyalty.engagement.v1 import engagement_service_pb2 as epb
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty.tiers.v1 import events_pb2 as tiers_events
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.engagement.conftest import Engagement, catalogue, engagement  # noqa: F401 (fixtures)
from tests.gateway.conftest import Gateway
from tests.insights.conftest import Suite, unit_team, until
from tests.support.events import publish
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

MEMBERS = 16


async def uplift(suite: Suite, journey: str, window_days: int = 0) -> pb.GetJourneyUpliftResponse:
    response: pb.GetJourneyUpliftResponse = await suite.insights().GetJourneyUplift(
        pb.GetJourneyUpliftRequest(journey=journey, window_days=window_days)
    )
    return response


async def held_out_journey(marketing: Engagement) -> tuple[str, dict[str, bool]]:
    """A journey on a tier only its own members reach, half held out, its steps a tag; its
    members entered: journey name and member -> held out."""
    tier = f"t-{uuid.uuid4().hex[:8]}"
    journey = await marketing.journey(
        epb.Journey(
            display_name="uplift test",
            trigger=epb.Trigger(kind=epb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=[epb.Step(change_tags=epb.ChangeTags(add_tags=["campaign:uplift"]))],
            control_share=0.5,
        )
    )
    members = [await marketing.member() for _ in range(MEMBERS)]
    for member_id in members:
        await publish(
            marketing.settings,
            "tiers",
            tiers_events.TierChanged(
                member_id=member_id,
                from_tier="silver",
                to_tier=tier,
                reason="qualified",
                effective_at=timestamp(datetime.now(UTC)),
            ),
        )
    done = (epb.ENTRY_STATE_COMPLETED, epb.ENTRY_STATE_HELD_OUT)
    entries = await until(
        lambda: marketing.entries(journey.name),
        lambda found: len(found) == MEMBERS and all(e.state in done for e in found),
    )
    assert sorted(e.member_id for e in entries) == sorted(members), entries
    return journey.name, {e.member_id: e.state == epb.ENTRY_STATE_HELD_OUT for e in entries}


async def test_members_the_journey_acted_on_buy_more_than_its_control_group(
    suite: Suite,
    engagement: Engagement,  # noqa: F811 (the fixture)
) -> None:
    journey, held_out = await held_out_journey(engagement)
    treated = [m for m, control in held_out.items() if not control]
    control = [m for m, control in held_out.items() if control]
    assert treated and control, held_out  # 16 members split in half: both groups are there
    # Insights heard of every entry, in its group.
    entered = await until(
        lambda: uplift(suite, journey),
        lambda u: u.treatment.members == len(treated) and u.control.members == len(control),
    )
    assert (entered.treatment.members, entered.control.members) == (len(treated), len(control))
    assert entered.conversion.absolute == 0 and entered.treatment.converted == 0

    for member_id in treated:
        await suite.points.earn(f"members/{member_id}", "mall", "300.00")
    await suite.points.earn(f"members/{control[0]}", "mall", "100.00")

    found = await until(
        lambda: uplift(suite, journey),
        lambda u: u.treatment.converted == len(treated) and u.control.converted == 1,
    )
    assert found.journey == journey and found.window_days == 30
    assert found.treatment.converted == len(treated)
    assert found.treatment.conversion_rate == 1.0
    assert found.control.conversion_rate == pytest.approx(1 / len(control))
    assert found.treatment.spend_per_member == pytest.approx(300.0)
    assert found.control.spend_per_member == pytest.approx(100.0 / len(control))
    assert found.treatment.points_per_member > found.control.points_per_member > 0
    assert found.treatment.open_windows == len(treated)  # their 30 days have not ended
    assert found.conversion.absolute == pytest.approx(1 - 1 / len(control))
    assert found.conversion.absolute_low <= found.conversion.absolute
    assert found.conversion.absolute <= found.conversion.absolute_high
    assert found.conversion.relative == pytest.approx(len(control) - 1)
    assert found.spend_per_member.absolute > 0
    assert found.points_per_member.absolute > 0
    assert found.insufficient  # 16 members cannot settle it


async def test_a_journey_nobody_entered_has_two_empty_groups(suite: Suite) -> None:
    found = await uplift(suite, f"journeys/{uuid.uuid4()}", 7)
    assert (found.treatment.members, found.control.members, found.window_days) == (0, 0, 7)
    assert found.insufficient and not found.conversion.significant
    assert not found.conversion.HasField("relative")


async def test_a_bad_request_names_its_fields(suite: Suite) -> None:
    bad = await fails(
        suite.insights().GetJourneyUplift(
            pb.GetJourneyUpliftRequest(journey="segments/x", window_days=-1)
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad.fields) == {"journey", "window_days"}
    too_long = await fails(
        suite.insights().GetJourneyUplift(
            pb.GetJourneyUpliftRequest(journey="journeys/a", window_days=366)
        )
    )
    assert too_long.fields == ["window_days"]


async def test_a_units_team_may_not_read_a_journeys_uplift(suite: Suite) -> None:
    denied = await fails(
        suite.insights(unit_team("mall")).GetJourneyUplift(
            pb.GetJourneyUpliftRequest(journey=f"journeys/{uuid.uuid4()}")
        )
    )
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED


async def test_the_uplift_over_http_through_the_gateway(
    suite: Suite, gateway_service: RunningService
) -> None:
    gateway = Gateway(
        gateway_service, f"http://127.0.0.1:{gateway_service.context.settings.gateway_http_port}"
    )
    journey = f"journeys/{uuid.uuid4()}"
    async with await gateway.session("group", "insights:group") as http:
        found = await http.get(f"/v1/insights/{journey}/uplift", params={"windowDays": "14"})
        assert found.status_code == 200, found.text
        body: dict[str, Any] = found.json()
        assert body["journey"] == journey and body["windowDays"] == 14
        assert body["insufficient"] is True
        bad = await http.get(f"/v1/insights/{journey}/uplift", params={"windowDays": "-3"})
        assert bad.status_code == 400, bad.text
