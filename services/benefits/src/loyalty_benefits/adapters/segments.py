"""The services that list an issuance's members, as bulk issuances use them: the identity
service (the members with a tag) and the insights service (a dynamic segment's members), a page
at a time, over kit channels (deadline on every call, retries on UNAVAILABLE). A definite
refusal (a malformed tag, a segment that does not exist) is SegmentRefused; anything else
SegmentUnreachable (try again later)."""

from __future__ import annotations

import grpc
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from loyalty.insights.v1 import segments_pb2 as segments_pb
from loyalty.insights.v1.segments_pb2_grpc import SegmentServiceStub
from loyalty_kit.caller import Caller
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.peers import peer
from loyalty_kit.scopes import INSIGHTS_GROUP, MEMBERS_MANAGE
from loyalty_kit.settings import Settings
from loyalty_kit.status import definite, error_info, from_rpc_error

from loyalty_benefits.domain.errors import SegmentRefused, SegmentUnreachable
from loyalty_benefits.service_layer.ports import SegmentPage

CALLER = Caller(unit=GROUP, client_id="benefits-issuances", scopes=frozenset({MEMBERS_MANAGE}))
# Benefits reads any segment an issuer targets (the issuer holds `coupons:issue`; it sees the
# coupons issued, not the segment's members).
SEGMENTS_CALLER = Caller(
    unit=GROUP, client_id="benefits-issuances", scopes=frozenset({INSIGHTS_GROUP})
)


class GrpcSegments:
    def __init__(self, settings: Settings) -> None:
        self._identity = peer(settings, "benefits", "identity", IdentityServiceStub)
        self._stub = self._identity.stub
        self._metadata = self._identity.metadata

    async def page(self, tag: str, page_token: str, size: int) -> SegmentPage:
        try:
            response = await self._stub.ListMembers(
                identity_pb.ListMembersRequest(
                    tag=tag,
                    page_size=size,
                    page_token=page_token,
                    view=identity_pb.MEMBER_VIEW_BASIC,  # ids are all an issuance needs
                ),
                metadata=self._metadata(CALLER),
            )
        except grpc.aio.AioRpcError as error:
            raise _refusal(error, "identity") from None
        return SegmentPage(
            [m.member_id for m in response.members],
            response.next_page_token,
            response.total_size,
        )

    async def close(self) -> None:
        await self._identity.close()


class GrpcDynamicSegments:
    def __init__(self, settings: Settings) -> None:
        self._insights = peer(settings, "benefits", "insights", SegmentServiceStub)
        self._stub = self._insights.stub
        self._metadata = self._insights.metadata

    async def check(self, segment: str) -> None:
        try:
            await self._stub.GetSegment(
                segments_pb.GetSegmentRequest(name=segment),
                metadata=self._metadata(SEGMENTS_CALLER),
            )
        except grpc.aio.AioRpcError as error:
            raise _refusal(error, "insights") from None

    async def page(self, segment: str, page_token: str, size: int) -> SegmentPage:
        try:
            response = await self._stub.ListSegmentMembers(
                segments_pb.ListSegmentMembersRequest(
                    segment=segment, page_size=size, page_token=page_token
                ),
                metadata=self._metadata(SEGMENTS_CALLER),
            )
        except grpc.aio.AioRpcError as error:
            raise _refusal(error, "insights") from None
        return SegmentPage(
            [m.removeprefix("members/") for m in response.members],
            response.next_page_token,
            response.total_size,
        )

    async def close(self) -> None:
        await self._insights.close()


def _refusal(error: grpc.aio.AioRpcError, upstream: str) -> Exception:
    """A definite refusal (SegmentRefused, with the upstream's reason) or an outage."""
    if not definite(error.code()):
        return SegmentUnreachable(error.code().name)
    status = from_rpc_error(error)
    info = error_info(status) if status is not None else None
    return SegmentRefused(
        info.reason if info else error.code().name,
        status.message if status is not None else (error.details() or ""),
        upstream,
    )
