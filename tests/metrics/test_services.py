"""Each service's /metrics after real calls: counters move with the labels an operator reads,
and no label names a member."""

from __future__ import annotations

import httpx
import pytest
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway
from tests.points.conftest import Points, pos
from tests.support.metrics import Scrape, moved, scrape, scraped_until
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

EARN = {"grpc_service": "loyalty.points.v1.PointsService", "grpc_method": "EarnPoints"}
EARNED = "loyalty.points.v1.PointsEarned"


async def test_earning_counts_the_call_the_event_and_the_points_of_the_unit(
    points: Points, tiers_service: RunningService
) -> None:
    service = points.service
    member = await points.member()
    before, tiers_before = await scrape(service), await scrape(tiers_service)

    earned = await points.earn(member, "hotel", "880.00")
    refused = await fails(points.earn(member, "hotel", "10.00", caller=pos("mall")))

    after = await scrape(service)
    handled = "grpc_server_handled_total"
    assert moved(before, after, handled, grpc_code="OK", **EARN) == 1
    assert moved(before, after, handled, grpc_code=refused.code.name, **EARN) == 1
    assert refused.code.name == "PERMISSION_DENIED"
    assert moved(before, after, "grpc_server_handling_seconds_count", **EARN) == 2
    points_earned = moved(before, after, "loyalty_points_total", movement="earned", unit="hotel")
    assert points_earned == earned.posting.points > 0
    assert moved(before, after, "loyalty_events_written_total", event_type=EARNED) == 1
    assert moved(before, after, "loyalty_points_total", unit="mall") == 0  # refused: nothing

    # The relay publishes it and the tiers service takes it: both show.
    published = await scraped_until(
        service, lambda s: moved(before, s, "loyalty_outbox_published_events_total") >= 1
    )
    assert moved(before, published, "loyalty_outbox_published_events_total") >= 1
    assert "loyalty_outbox_backlog_events" in published.names()
    assert "loyalty_outbox_lag_seconds" in published.names()

    def took_it(s: Scrape) -> bool:
        return (
            moved(
                tiers_before,
                s,
                "loyalty_consumer_events_total",
                consumer="tiers-activity",
                outcome="handled",
            )
            >= 1
        )

    tiers_after = await scraped_until(tiers_service, took_it)
    assert took_it(tiers_after)
    lag = "loyalty_consumer_delivery_lag_seconds_count"
    assert moved(tiers_before, tiers_after, lag, consumer="tiers-activity") >= 1
    assert tiers_after.value("loyalty_events_dead_lettered_total", consumer="tiers-activity") == 0
    pending = [s for s in tiers_after.samples if s.name == "loyalty_consumer_pending_events"]
    assert {s.labels["consumer"] for s in pending} >= {"tiers-activity", "tiers-members"}
    assert member.split("/")[-1] not in after.text + tiers_after.text


async def test_the_gateway_counts_requests_by_route_template_never_by_path(
    gateway: Gateway, points: Points
) -> None:
    member = await points.member()
    before = await scrape(gateway.service)
    async with await gateway.session("hotel", "earn", "redeem") as till:
        answer = await till.get(f"/v1/{member}/balance")
        assert answer.status_code == 200, answer.text
        nowhere = await till.get(f"/v1/{member}/nowhere")
        assert nowhere.status_code == 404
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        assert (await anonymous.get(f"/v1/{member}/balance")).status_code == 401
    after = await scrape(gateway.service)

    requests = "loyalty_http_requests_total"
    balance = {"method": "GET", "route": "/v1/{member=members/*}/balance"}
    assert moved(before, after, requests, status="200", **balance) == 1
    assert moved(before, after, requests, status="401", **balance) == 1
    assert moved(before, after, requests, route="unmatched", status="404") == 1
    assert moved(before, after, requests, route="/v1/token", status="200") == 1
    assert moved(before, after, "loyalty_http_request_duration_seconds_count", **balance) == 2
    assert member.split("/")[-1] not in after.text
