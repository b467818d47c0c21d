"""Benefits, points and identity as journeys act through them, on the engagement service's own
account (`loyalty_kit.peers`): a coupon issued as the journey's unit (`coupons:issue`), bonus
points adjusted as the funding unit (`points:adjust`), tags changed, a member's consents
read and withdrawn (an unsubscribe) as the group's member operations (`members:manage`).
The client ID is fixed, so every replica's retry of a step is recognised by its idempotency key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1.benefits_service_pb2_grpc import BenefitsServiceStub
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1.points_service_pb2_grpc import PointsServiceStub
from loyalty_kit.caller import Caller
from loyalty_kit.jobs import outage
from loyalty_kit.kernel.members import member_name
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.peers import peer
from loyalty_kit.scopes import COUPONS_ISSUE, MEMBERS_MANAGE, POINTS_ADJUST
from loyalty_kit.settings import Settings
from loyalty_kit.status import definite, error_info, from_rpc_error

from loyalty_engagement.service_layer.ports import ActionRefused, ActionUnreachable

CLIENT_ID = "engagement-journeys"
T = TypeVar("T")


async def _call(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except grpc.aio.AioRpcError as error:
        if outage(error):
            raise  # the service is down: the event is retried without counting a delivery
        if not definite(error.code()):
            raise ActionUnreachable(error.code().name) from None
        status = from_rpc_error(error)
        info = error_info(status) if status is not None else None
        raise ActionRefused(info.reason if info else error.code().name) from None


class GrpcActions:
    def __init__(self, settings: Settings) -> None:
        self._benefits = peer(settings, "engagement", "benefits", BenefitsServiceStub)
        self._points = peer(settings, "engagement", "points", PointsServiceStub)
        self._identity = peer(settings, "engagement", "identity", IdentityServiceStub)

    def _as(self, unit: str, scope: str) -> Caller:
        return Caller(unit=unit or GROUP, client_id=CLIENT_ID, scopes=frozenset({scope}))

    async def issue_coupon(
        self, member_id: str, template: str, unit: str, key: str, grant_key: str = ""
    ) -> str:
        response = await _call(
            lambda: self._benefits.stub.IssueCoupons(
                benefits_pb.IssueCouponsRequest(
                    template=template,
                    request_id=key,
                    members=[member_name(member_id)],
                    grant_key=grant_key,
                ),
                metadata=self._benefits.metadata(self._as(unit, COUPONS_ISSUE)),
            )
        )
        return str(response.coupons[0].code) if response.coupons else ""

    async def award_points(
        self, member_id: str, points: int, funding_unit: str, reason: str, key: str
    ) -> str:
        response = await _call(
            lambda: self._points.stub.AdjustPoints(
                points_pb.AdjustPointsRequest(
                    member=member_name(member_id),
                    request_id=key,
                    unit=funding_unit,
                    points=points,
                    reason=reason,
                ),
                metadata=self._points.metadata(self._as(funding_unit, POINTS_ADJUST)),
            )
        )
        return str(response.posting.posting_id)

    async def change_tags(
        self, member_id: str, add: tuple[str, ...], remove: tuple[str, ...], key: str
    ) -> None:
        await _call(
            lambda: self._identity.stub.UpdateTags(
                identity_pb.UpdateTagsRequest(
                    member=member_name(member_id),
                    request_id=key,
                    add_tags=list(add),
                    remove_tags=list(remove),
                ),
                metadata=self._identity.metadata(self._as(GROUP, MEMBERS_MANAGE)),
            )
        )

    async def consents(self, member_id: str) -> frozenset[str]:
        response = await _call(
            lambda: self._identity.stub.GetMember(
                identity_pb.GetMemberRequest(name=member_name(member_id)),
                metadata=self._identity.metadata(self._as(GROUP, MEMBERS_MANAGE)),
            )
        )
        return frozenset(
            member_pb2.ConsentPurpose.Name(c.purpose) for c in response.member.consents if c.granted
        )

    async def withdraw_consent(self, member_id: str, purpose: str, key: str) -> None:
        await _call(
            lambda: self._identity.stub.SetConsents(
                identity_pb.SetConsentsRequest(
                    member=member_name(member_id),
                    request_id=key,
                    changes=[
                        member_pb2.ConsentChange(
                            purpose=member_pb2.ConsentPurpose.Value(purpose), granted=False
                        )
                    ],
                    source="engagement:unsubscribe",
                ),
                metadata=self._identity.metadata(self._as(GROUP, MEMBERS_MANAGE)),
            )
        )

    async def close(self) -> None:
        for p in (self._benefits, self._points, self._identity):
            await p.close()
