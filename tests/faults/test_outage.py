"""PostgreSQL stops: every answer is UNAVAILABLE / DATABASE_UNAVAILABLE over gRPC and 503 with
Retry-After over HTTP, never INTERNAL; health turns NOT_SERVING on the first failed call and
SERVING again once the database is back; nothing needs a restart."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from grpc_health.v1 import health_pb2

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
