"""A member's data export (`ExportMemberData`; portability, PIPL / GDPR): what every service
holds on the member, each part in its service's own messages.

Identity answers first: it checks the member exists and the caller may read personal data
(`personal_data:read`, its rule and the gateway's). Then points, tiers and benefits are read in
parallel, every page of every list, under the one deadline of the request. The export is whole
or not at all: a service that does not answer fails it (UNAVAILABLE), as a part left out would
read as "nothing held".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty_kit.caller import current_caller
from loyalty_kit.logs import get_logger
from loyalty_kit.resources import member_id_of
from loyalty_kit.timestamps import timestamp

from loyalty_gateway.adapters.services import Call, Metadata, Services
from loyalty_gateway.flows.parallel import AT_LEAST_SECONDS
from loyalty_gateway.flows.service import method

log = get_logger("loyalty.gateway")
MAX_PAGE = 500  # the largest page of the lists read here (entitlements: 200, clamped)

# One page of a list: the page token in, the response (with `next_page_token`) out.
Page = Callable[[str], Awaitable[Any]]
# A list of the member's: (call, member, page size, page token) -> one page.
Lister = Callable[[Call, str, int, str], Awaitable[Any]]


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


async def every_item(lister: Lister, call: Call, member: str, items: str) -> list[Any]:
    """Every item of one of the member's lists, page by page."""
    return await every_page(lambda token: lister(call, member, MAX_PAGE, token), items)


@dataclass(frozen=True)
class ExportMemberData:
    METHOD = method("ExportMemberData")

    services: Services
    deadline: float  # seconds, for the whole export
    clock: Callable[[], datetime]

    async def __call__(
        self, request: pb.ExportMemberDataRequest, md: Metadata
    ) -> pb.ExportMemberDataResponse:
        member = request.member
        member_id = member_id_of(member, "member")
        call = Call.within(md, self.deadline, AT_LEAST_SECONDS)
        identity = await self.services.export_identity(call, member)
        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the others
                points = group.create_task(self._points(call, member))
                tier = group.create_task(self._tier(call, member))
                benefits = group.create_task(self._benefits(call, member))
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
            export_time=timestamp(self.clock()),
            identity=identity,
            points=points.result(),
            tier=tier.result(),
            benefits=benefits.result(),
        )

    async def _points(self, call: Call, member: str) -> pb.PointsExport:
        services = self.services
        balance = await services.get_balance(call, member)
        postings = await every_item(services.list_postings, call, member, "postings")
        return pb.PointsExport(balance=balance.balance, postings=postings)

    async def _tier(self, call: Call, member: str) -> pb.TierExport:
        services = self.services
        standing = await services.get_member_tier(call, member)
        history = await every_item(services.list_tier_history, call, member, "changes")
        grants = await every_item(services.list_tier_grants, call, member, "tier_grants")
        return pb.TierExport(standing=standing, history=history, grants=grants)

    async def _benefits(self, call: Call, member: str) -> pb.BenefitsExport:
        services = self.services
        entitlements = await every_item(services.list_entitlements, call, member, "entitlements")
        coupons = await every_item(services.list_coupons, call, member, "coupons")
        return pb.BenefitsExport(entitlements=entitlements, coupons=coupons)
