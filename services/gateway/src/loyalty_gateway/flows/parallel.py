"""Parts of an answer asked of several services at once, and what a member can use now (their
entitlements at the unit and their coupons), which the overview and a recorded purchase show."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb

from loyalty_gateway.adapters.services import Call, Services

Ask = Callable[[], Awaitable[Any]]
COUPONS_SHOWN = 50
ENTITLEMENTS_SHOWN = 200
AT_LEAST_SECONDS = 0.05  # each part's time when the deadline has (nearly) passed


async def in_parallel(
    asks: dict[str, Ask], must: Sequence[str] = ()
) -> tuple[dict[str, Any], list[str]]:
    """Every part at once (under the deadline of their `Call`). A part whose service fails
    is left out and named; a failure of a part in `must` is the whole answer's failure."""
    names = list(asks)
    results = await asyncio.gather(*(asks[n]() for n in names), return_exceptions=True)
    found: dict[str, Any] = {}
    unavailable: list[str] = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, grpc.aio.AioRpcError):
            if name in must:
                raise result
            unavailable.append(name)
        elif isinstance(result, BaseException):
            raise result
        else:
            found[name] = result
    return found, unavailable


def usable_now(services: Services, call: Call, member: str, unit: str) -> dict[str, Ask]:
    """The asks for the member's entitlements at `unit` and their coupons not yet used."""
    return {
        "entitlements": lambda: services.list_entitlements(
            call, member, ENTITLEMENTS_SHOWN, unit=unit
        ),
        "coupons": lambda: services.list_coupons(
            call, member, COUPONS_SHOWN, state=benefits_pb.COUPON_STATE_ISSUED
        ),
    }


class ShowsUsable(Protocol):
    @property
    def entitlements(self) -> Any: ...

    @property
    def coupons(self) -> Any: ...


def add_usable(response: ShowsUsable, found: dict[str, Any]) -> None:
    """What `usable_now` found, into an answer with `entitlements` and `coupons`."""
    if "entitlements" in found:
        response.entitlements.extend(found["entitlements"].entitlements)
    if "coupons" in found:
        response.coupons.extend(found["coupons"].coupons)
