"""Calls to the faulted suite, and what came back, for the fault tests."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import httpx
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit.status import error_info, from_rpc_error

from tests.faults.conftest import Suite
from tests.points.conftest import line, pos, rid


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


def grpc_calls(suite: Suite, member: str, timeout: float = 15) -> list[Any]:
    """Reads and writes at identity, points and tiers, each with `timeout` as deadline."""
    points = suite.points
    return [
        points.identity().GetMember(identity_pb.GetMemberRequest(name=member), timeout=timeout),
        points.identity().RegisterMember(
            identity_pb.RegisterMemberRequest(
                request_id=rid(),
                unit="mall",
                identities=[member_pb2.Identity(type="phone", value=phone())],
            ),
            timeout=timeout,
        ),
        points.as_().GetBalance(points_pb.GetBalanceRequest(member=member), timeout=timeout),
        points.as_(pos("mall")).EarnPoints(
            points_pb.EarnPointsRequest(
                member=member,
                request_id=rid(),
                unit="mall",
                order_id=f"o-{rid()[:8]}",
                lines=[line("10.00")],
            ),
            timeout=timeout,
        ),
        suite.tiers().GetMemberTier(tiers_pb.GetMemberTierRequest(member=member), timeout=timeout),
        suite.tiers().PreviewMemberTier(
            tiers_pb.PreviewMemberTierRequest(
                member=member,
                activities=[tiers_pb.ExtraActivity(unit="mall", qualifying_spend="10", visits=1)],
            ),
            timeout=timeout,
        ),
    ]
