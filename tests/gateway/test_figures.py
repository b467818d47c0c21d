"""The dashboards' figures against this run's services: a few purchases at two units, a
redemption at a third and a journey, insights refreshed; every figure then has data, a unit's
manager gets its own unit's, and a service that is not there leaves its figure unavailable."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from loyalty.engagement.v1 import engagement_service_pb2 as epb
from loyalty.insights.v1 import insights_service_pb2 as insights_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import events_pb2 as tiers_events
from loyalty_devstack.testing import metadata_for
from loyalty_gateway.adapters.backends import Backends
from loyalty_gateway.adapters.services import Call, Services
from loyalty_gateway.flows import figures
from loyalty_gateway.flows.figures import Figure
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.engagement.conftest import Engagement, catalogue, engagement  # noqa: F401 (fixtures)
from tests.insights.conftest import Suite, suite  # noqa: F401 (fixture)
from tests.support.events import publish
from tests.tiers.conftest import tiers  # noqa: F401 (fixture: the ladder)

pytestmark = pytest.mark.asyncio(loop_scope="session")

OPERATOR = Caller(
    unit="group",
    client_id="console-admin",
    scopes=frozenset({"admin", "insights:group", "engagement:read"}),
)
UPLIFT_OR_SETTLEMENT = ("settlement", "journeys")  # the group's only
MALL_MARKETING = Caller(
    unit="mall", client_id="mall-marketing", scopes=frozenset({"engagement:write"})
)
MALL_MANAGER = Caller(
    unit="mall", client_id="console-mall", scopes=frozenset({"insights:read", "engagement:read"})
)


async def seeded(suite: Suite, marketing: Engagement) -> None:  # noqa: F811
    """Members buying at the mall and the hotel, spending at the cinema, moving to a tier
    of their own which enters them into a mall journey."""
    tier = f"t-{uuid.uuid4().hex[:8]}"
    members = []
    for _ in range(3):
        member = (await suite.member()).name
        members.append(member.removeprefix("members/"))
        await suite.points.earn(member, "mall", "300.00")
        await suite.points.earn(member, "hotel", "200.00")
        await suite.points.as_().RedeemPoints(
            points_pb.RedeemPointsRequest(
                member=member, request_id=uuid.uuid4().hex, unit="cinema", points=20
            )
        )
    journey = epb.Journey(
        display_name=f"figures {uuid.uuid4().hex[:6]}",
        unit="mall",
        trigger=epb.Trigger(kind=epb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
        steps=[epb.Step(change_tags=epb.ChangeTags(add_tags=["campaign:figures"]))],
        control_share=0.5,
        state=epb.JOURNEY_STATE_ACTIVE,
    )
    made = await marketing.as_(MALL_MARKETING).CreateJourney(
        epb.CreateJourneyRequest(journey=journey, request_id=uuid.uuid4().hex)
    )
    marketing.made.append(made.journey.name)  # paused when the test ends
    for member_id in members:
        await publish(
            marketing.settings,
            "tiers",
            tiers_events.TierChanged(
                member_id=member_id,
                from_tier="",
                to_tier=tier,
                reason="qualified",
                effective_at=timestamp(suite.clock()),
            ),
        )


def has_data(figure: Figure) -> bool:
    numbers = [v for s in figure.series for v in s.values] + [c[2] for c in figure.cells]
    if figure.key == "journeys":  # the members entered (rates may be 0: none bought since)
        numbers = [float(r[2] or 0) + float(r[3] or 0) for r in figure.rows]
    return figure.available and not figure.unavailable and bool(figure.rows) and any(numbers)


async def all_figures(
    settings: Any,
    suite: Suite,  # noqa: F811
    caller: Caller,
    unit: str = "",
) -> dict[str, Figure]:
    backends = Backends(settings)
    try:
        call = Call.within(metadata_for(caller), 15.0, 0.05)
        now = suite.clock()
        period = figures.Period(now - timedelta(days=40), now + timedelta(days=1))
        return await figures.every_dashboard(Services(backends), call, period, unit)
    finally:
        await backends.close()


async def until_all(
    settings: Any,
    suite: Suite,  # noqa: F811
    caller: Caller,
    unit: str = "",
    seconds: float = 30,
) -> dict[str, Figure]:
    """The figures once each has data (insights follows the events a moment late); the last
    answer at the deadline, for the assertion to show."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await all_figures(settings, suite, caller, unit)
        if all(has_data(f) for n, f in found.items() if not unit or n not in UPLIFT_OR_SETTLEMENT):
            return found
        if asyncio.get_running_loop().time() > deadline:
            return found
        await suite.insights().RefreshFigures(
            insights_pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex)
        )


async def test_every_figure_has_data_and_a_unit_gets_its_own(
    suite: Suite,  # noqa: F811
    engagement: Engagement,  # noqa: F811
    tiers: Any,  # noqa: F811
    gateway_service: RunningService,
) -> None:
    await seeded(suite, engagement)
    await suite.insights().RefreshFigures(
        insights_pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex)
    )
    settings = gateway_service.context.settings
    found = await until_all(settings, suite, OPERATOR)
    assert sorted(found) == sorted(figures.DASHBOARDS)
    empty = {name: f for name, f in found.items() if not has_data(f)}
    assert not empty, empty
    assert any(tier.startswith("t-") for tier in (s.name for s in found["tiers"].series))
    assert ("mall", "cinema") in {(r[0], r[1]) for r in found["settlement"].rows}
    assert {"mall", "hotel"} <= set(found["overlap"].x)

    mall = await until_all(settings, suite, MALL_MANAGER, unit="mall")
    assert {s.name for s in mall["liability"].series} == {"mall"}
    assert all("mall" in (r[0], r[1]) for r in mall["overlap"].rows)
    assert {r[1] for r in mall["journeys"].rows} == {"mall"}
    assert mall["journeys"].unavailable == ("GetJourneyUplift",)  # the group's team's only
    assert mall["settlement"].unavailable == ("GetSettlement",)  # the group's finance only
    assert figures.NOW not in mall["tiers"].x  # tiers counts the group's only
    lacking = {n: f for n, f in mall.items() if n not in UPLIFT_OR_SETTLEMENT and not has_data(f)}
    assert not lacking, lacking


async def test_a_service_not_there_leaves_its_figure_unavailable(
    suite: Suite,  # noqa: F811
    gateway_service: RunningService,
) -> None:
    settings = gateway_service.context.settings.model_copy(
        update={"points_target": "127.0.0.1:9", "engagement_target": "127.0.0.1:9"}
    )
    found = await all_figures(settings, suite, OPERATOR)
    assert not found["settlement"].available
    assert found["settlement"].unavailable == ("GetSettlement",)
    assert not found["journeys"].available
    assert found["journeys"].unavailable == ("ListJourneys",)
    assert found["rfm"].available and found["liability"].available
