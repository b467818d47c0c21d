"""A member's data export (portability, PIPL / GDPR): what every service holds on the member,
each part in its service's own messages.

Identity answers first: it checks the member exists and the caller may read personal data
(`personal_data:read`, its rule and the gateway's). Then points, tiers and benefits are read in
parallel, every page of every list, under the one deadline of the request. The export is whole
or not at all: a service that does not answer fails it (UNAVAILABLE), as a part left out would
read as "nothing held".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit.caller import current_caller
from loyalty_kit.logs import get_logger
from loyalty_kit.resources import member_id_of
from loyalty_kit.timestamps import timestamp

from loyalty_gateway.checkout import Metadata
from loyalty_gateway.stubs import Stubs

log = get_logger("loyalty.gateway")
MAX_PAGE = 500  # the largest page of the lists read here (entitlements: 200, clamped)

# One page of a list: the page token in, the response (with `next_page_token`) out.
Page = Callable[[str], Awaitable[Any]]


class _Reading:
    """One export's calls: the caller's metadata and what is left of its one deadline."""

    def __init__(self, member: str, md: Metadata, left: Callable[[], float]) -> None:
        self.member, self.md, self.left = member, md, left

    async def one(self, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        return await method(request, metadata=self.md, timeout=self.left())

    async def every(
        self, method: Callable[..., Awaitable[Any]], request_type: Any, items: str
    ) -> list[Any]:
        """Every item of the member's list, page by page."""
        return await every_page(
            lambda token: self.one(
                method, request_type(member=self.member, page_size=MAX_PAGE, page_token=token)
            ),
            items,
        )


async def every_page(page: Page, items: str) -> list[Any]:
    """The items of every page of a list, in the order the service gives them."""
    found: list[Any] = []
    token = ""
    while True:
        response = await page(token)
        found.extend(getattr(response, items))
        token = response.next_page_token
        if not token:
            return found


class Exports:
    def __init__(self, stubs: Stubs, deadline_seconds: float) -> None:
        self.stubs = stubs
        self.deadline = deadline_seconds

    async def export(
        self, request: pb.ExportMemberDataRequest, md: Metadata
    ) -> pb.ExportMemberDataResponse:
        member = request.member
        member_id = member_id_of(member, "member")
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline

        def left() -> float:
            return max(0.05, ends - loop.time())

        identity = await self.stubs.identity.ExportMemberData(
            identity_pb.ExportMemberDataRequest(name=member), metadata=md, timeout=left()
        )
        read = _Reading(member, md, left)
        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the others
                points = group.create_task(self._points(read, self.stubs.points))
                tier = group.create_task(self._tier(read, self.stubs.tiers))
                benefits = group.create_task(self._benefits(read, self.stubs.benefits))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        caller = current_caller()
        # Who exported whose data, never the data itself.
        log.info(
            "member data exported",
            member_id=member_id,
            client_id=caller.client_id,
            caller_unit=caller.unit,
        )
        return pb.ExportMemberDataResponse(
            member=member,
            export_time=timestamp(datetime.now(UTC)),
            identity=identity,
            points=points.result(),
            tier=tier.result(),
            benefits=benefits.result(),
        )

    @staticmethod
    async def _points(read: _Reading, points: Any) -> pb.PointsExport:
        balance = await read.one(points.GetBalance, points_pb.GetBalanceRequest(member=read.member))
        postings = await read.every(points.ListPostings, points_pb.ListPostingsRequest, "postings")
        return pb.PointsExport(balance=balance.balance, postings=postings)

    @staticmethod
    async def _tier(read: _Reading, tiers: Any) -> pb.TierExport:
        standing = await read.one(
            tiers.GetMemberTier, tiers_pb.GetMemberTierRequest(member=read.member)
        )
        history = await read.every(
            tiers.ListTierHistory, tiers_pb.ListTierHistoryRequest, "changes"
        )
        grants = await read.every(
            tiers.ListTierGrants, tiers_pb.ListTierGrantsRequest, "tier_grants"
        )
        return pb.TierExport(standing=standing, history=history, grants=grants)

    @staticmethod
    async def _benefits(read: _Reading, benefits: Any) -> pb.BenefitsExport:
        entitlements = await read.every(
            benefits.ListEntitlements, benefits_pb.ListEntitlementsRequest, "entitlements"
        )
        coupons = await read.every(benefits.ListCoupons, benefits_pb.ListCouponsRequest, "coupons")
        return pb.BenefitsExport(entitlements=entitlements, coupons=coupons)
