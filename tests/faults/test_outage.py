"""PostgreSQL stops: every answer is UNAVAILABLE / DATABASE_UNAVAILABLE over gRPC and 503 with
Retry-After over HTTP, never INTERNAL; health turns NOT_SERVING on the first failed call and
SERVING again once the database is back; nothing needs a restart."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit.status import error_info, from_rpc_error

from tests.faults.conftest import HEALTH_TIMER_SECONDS, Suite
from tests.points.conftest import line, pos, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def phone() -> str:
    return f"134{uuid.uuid4().int % 10**8:08d}"


def purchase(number: str, amount: str, request_id: str | None = None) -> dict[str, Any]:
    return {
        "identity": {"type": "phone", "value": number},
        "unit": "mall",
        "orderId": f"mall-{uuid.uuid4().hex[:8]}",
        "channel": "CHANNEL_POS",
        "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": amount}}],
        "requestId": request_id or uuid.uuid4().hex,
    }


async def outcome(call: Any) -> tuple[str, str, str]:
    """(code, ErrorInfo reason, domain) of a gRPC call; ("OK", "", "") when it succeeded."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        status = from_rpc_error(error)
        info = error_info(status) if status is not None else None
        return error.code().name, info.reason if info else "", info.domain if info else ""
    return "OK", "", ""


def http_outcome(response: httpx.Response) -> tuple[int, str | None, str, str]:
    """(HTTP code, Retry-After, Status code name, ErrorInfo reason) of an HTTP answer."""
    if response.status_code < 400:
        return response.status_code, None, "OK", ""
    error = response.json()["error"]
    reasons = [d["reason"] for d in error["details"] if d["@type"].endswith("ErrorInfo")]
    return (
        response.status_code,
        response.headers.get("Retry-After"),
        error["status"],
        reasons[0] if reasons else "",
    )


async def registered(suite: Suite, number: str) -> str:
    made = await suite.points.identity().RegisterMember(
        identity_pb.RegisterMemberRequest(
            request_id=rid(),
            unit="mall",
            channel=channel_pb2.CHANNEL_POS,
            identities=[member_pb2.Identity(type="phone", value=number)],
        )
    )
    return str(made.member.name)


def grpc_calls(suite: Suite, member: str) -> list[Any]:
    """Reads and writes at identity, points and tiers."""
    points = suite.points
    return [
        points.identity().GetMember(identity_pb.GetMemberRequest(name=member)),
        points.identity().RegisterMember(
            identity_pb.RegisterMemberRequest(
                request_id=rid(),
                unit="mall",
                identities=[member_pb2.Identity(type="phone", value=phone())],
            )
        ),
        points.as_().GetBalance(points_pb.GetBalanceRequest(member=member)),
        points.as_(pos("mall")).EarnPoints(
            points_pb.EarnPointsRequest(
                member=member,
                request_id=rid(),
                unit="mall",
                order_id=f"o-{rid()[:8]}",
                lines=[line("10.00")],
            )
        ),
        suite.tiers().GetMemberTier(tiers_pb.GetMemberTierRequest(member=member)),
        suite.tiers().PreviewMemberTier(
            tiers_pb.PreviewMemberTierRequest(
                member=member,
                activities=[tiers_pb.ExtraActivity(unit="mall", qualifying_spend="10", visits=1)],
            )
        ),
    ]


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
