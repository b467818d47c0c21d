"""The identity service, as bulk issuances use it: the members with a tag, a page at a time,
over a kit channel (deadline on every call, retries on UNAVAILABLE). A definite refusal (a
malformed tag) is SegmentRefused; anything else SegmentUnreachable (try again later)."""

from __future__ import annotations

import grpc
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from loyalty_kit.caller import Caller
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.peers import peer
from loyalty_kit.scopes import MEMBERS_MANAGE
from loyalty_kit.settings import Settings
from loyalty_kit.status import definite, error_info, from_rpc_error

from loyalty_benefits.domain.errors import SegmentRefused, SegmentUnreachable
from loyalty_benefits.service_layer.ports import SegmentPage

CALLER = Caller(unit=GROUP, client_id="benefits-issuances", scopes=frozenset({MEMBERS_MANAGE}))


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
            if not definite(error.code()):
                raise SegmentUnreachable(error.code().name) from None
            status = from_rpc_error(error)
            info = error_info(status) if status is not None else None
            raise SegmentRefused(
                info.reason if info else error.code().name,
                status.message if status is not None else (error.details() or ""),
            ) from None
        return SegmentPage(
            [m.member_id for m in response.members],
            response.next_page_token,
            response.total_size,
        )

    async def close(self) -> None:
        await self._identity.close()
