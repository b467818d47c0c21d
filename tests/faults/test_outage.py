"""PostgreSQL stops: every answer is UNAVAILABLE / DATABASE_UNAVAILABLE over gRPC and 503 with
Retry-After over HTTP, never INTERNAL; health turns NOT_SERVING on the first failed call and
SERVING again once the database is back; nothing needs a restart."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from grpc_health.v1 import health_pb2
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb

from tests.faults.calls import grpc_calls, http_outcome, outcome, phone, purchase, registered
from tests.faults.conftest import HEALTH_TIMER_SECONDS, Suite

pytestmark = pytest.mark.asyncio(loop_scope="session")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_a_stopped_database_answers_unavailable_and_health_follows_it(suite: Suite) -> None:
    number = phone()
    member = await registered(suite, number)
    async with await suite.gateway.session("mall", "earn", "profile:read") as http:
        assert (await http.post("/v1/purchases:record", json=purchase(number, "50.00"))).is_success
        for name in ("identity", "points", "tiers"):
            assert await suite.health(name) == SERVING

        await suite.cut()
        loop = asyncio.get_running_loop()
        cut_at = loop.time()
        # Reads and writes, several at once, twice: on the pooled connections the cut closed,
        # then on connections refused.
        for _round in range(2):
            answers = await asyncio.gather(
                *(outcome(call) for call in grpc_calls(suite, member) * 2)
            )
            assert {(code, reason) for code, reason, _ in answers} == {
                ("UNAVAILABLE", "DATABASE_UNAVAILABLE")
            }, answers
            assert {domain for *_, domain in answers} == {
                "identity.loyalty",
                "points.loyalty",
                "tiers.loyalty",
            }
            pages = await asyncio.gather(
                http.get(f"/v1/{member}"),
                http.get(f"/v1/{member}/balance"),
                http.get(f"/v1/{member}/overview"),
                http.post("/v1/purchases:record", json=purchase(number, "20.00")),
                http.post("/v1/token", auth=("mall-0a1b2c3d", "secret")),
            )
            assert {http_outcome(page) for page in pages} == {
                (503, "1", "UNAVAILABLE", "DATABASE_UNAVAILABLE")
            }, [page.text for page in pages]

        # Health turned NOT_SERVING because calls failed, long before its five-minute timer.
        for name in ("identity", "points", "tiers"):
            await suite.health_becomes(name, NOT_SERVING, within=20)
        assert loop.time() - cut_at < HEALTH_TIMER_SECONDS / 4

        await suite.restore()
        for name in ("identity", "points", "tiers", "gateway"):
            await suite.health_becomes(name, SERVING, within=30)
        answers = await asyncio.gather(*(outcome(call) for call in grpc_calls(suite, member)))
        assert {code for code, *_ in answers} == {"OK"}, answers
        again = await http.post("/v1/purchases:record", json=purchase(number, "30.00"))
        assert again.status_code == 200, again.text
        overview = await http.get(f"/v1/{member}/overview")
        assert overview.status_code == 200, overview.text


async def test_a_purchase_whose_answer_the_gateway_cannot_keep_is_answered_and_credited_once(
    suite: Suite,
) -> None:
    number = phone()
    member = await registered(suite, number)
    sale = purchase(number, "88.00", request_id=f"keep-{uuid.uuid4().hex[:12]}")
    async with await suite.gateway.session("mall", "earn") as http:
        await suite.cut("gateway")  # only the gateway's own database: the services are up
        try:
            first = await http.post("/v1/purchases:record", json=sale)
            assert first.status_code == 200, first.text
            retried = await http.post("/v1/purchases:record", json=sale)
            assert retried.status_code == 200, retried.text
        finally:
            await suite.restore("gateway")
        await suite.health_becomes("gateway", SERVING, within=30)
        kept = await http.post("/v1/purchases:record", json=sale)
        assert kept.status_code == 200, kept.text
        posting = first.json()["posting"]
        assert posting["points"] == "88"
        assert retried.json()["posting"] == posting == kept.json()["posting"]
        balance = (await http.get(f"/v1/{member}/balance")).json()["balance"]
        assert balance["lifetimeEarned"] == "88"  # credited once


async def test_events_met_by_a_consumer_whose_database_is_down_are_handled_once_it_is_back(
    suite: Suite, caplog: pytest.LogCaptureFixture
) -> None:
    """Tiers learns activity from points' events: while its database is cut they are given
    back with a warning (no traceback per event) and handled once it is back."""
    caplog.set_level(logging.WARNING)
    member = await registered(suite, phone())
    tiers = suite.tiers()
    asked = tiers_pb.GetMemberTierRequest(member=member)
    before = list((await tiers.GetMemberTier(asked)).progress)
    await suite.cut("tiers")
    try:
        await suite.points.earn(member, "mall", "300.00")
        await eventually(lambda: retried(caplog), within=20)
    finally:
        await suite.restore("tiers")

    async def learnt() -> bool:
        return list((await tiers.GetMemberTier(asked)).progress) != before

    await eventually(learnt, within=30)
    failures = [r for r in caplog.records if r.name.startswith("loyalty") and r.levelno >= 40]
    assert failures == [], [r.getMessage() for r in failures]


def retried(caplog: pytest.LogCaptureFixture) -> bool:
    return any(
        r.name == "loyalty.inbox" and "events will be retried" in r.getMessage()
        for r in caplog.records
    )


async def eventually(check: Callable[[], Any], within: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return
        assert loop.time() - started < within, "never happened"
        await asyncio.sleep(0.1)
