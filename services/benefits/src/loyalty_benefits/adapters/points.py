"""The points service, as the rewards catalogue uses it: debit and undo, over a kit channel
(deadline on every call, retries on UNAVAILABLE). Failures are sorted into a definite refusal
(PointsRefused, with the points service's own reason) and an unknown outcome
(PointsUnreachable: the debit may or may not have happened)."""

from __future__ import annotations

import grpc
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1.points_service_pb2_grpc import PointsServiceStub
from loyalty_kit.caller import Caller
from loyalty_kit.kernel.members import member_name
from loyalty_kit.peers import peer
from loyalty_kit.scopes import REDEEM
from loyalty_kit.settings import Settings
from loyalty_kit.status import definite, error_info, from_rpc_error, refusal_kind

from loyalty_benefits.domain.errors import PointsRefused, PointsUnreachable

# The client the points service sees: its idempotency keys are scoped by client, so every
# replica of the benefits service must call as the same one for retries to be recognised.
CLIENT_ID = "benefits-rewards"


def _translate(error: grpc.aio.AioRpcError) -> Exception:
    if not definite(error.code()):
        return PointsUnreachable(error.code().name)
    status = from_rpc_error(error)
    info = error_info(status) if status is not None else None
    return PointsRefused(
        refusal_kind(error.code()),
        info.reason if info else error.code().name,
        status.message if status is not None else (error.details() or ""),
        dict(info.metadata) if info else {},
    )


class GrpcPointsBank:
    def __init__(self, settings: Settings) -> None:
        self._points = peer(settings, "benefits", "points", PointsServiceStub)
        self._stub = self._points.stub

    def _as(self, unit: str) -> tuple[tuple[str, str], ...]:
        """The reward's unit spends the points (and only it may cancel that spending)."""
        caller = Caller(unit=unit, client_id=CLIENT_ID, scopes=frozenset({REDEEM}))
        return self._points.metadata(caller)

    async def redeem(
        self, member_id: str, unit: str, points: int, request_id: str, order_id: str
    ) -> str:
        try:
            response = await self._stub.RedeemPoints(
                points_pb.RedeemPointsRequest(
                    member=member_name(member_id),
                    request_id=request_id,
                    unit=unit,
                    points=points,
                    order_id=order_id,
                ),
                metadata=self._as(unit),
            )
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
        return str(response.posting.posting_id)

    async def cancel(
        self, member_id: str, unit: str, posting_id: str, request_id: str, reason: str
    ) -> None:
        try:
            await self._stub.CancelRedemption(
                points_pb.CancelRedemptionRequest(
                    member=member_name(member_id),
                    request_id=request_id,
                    posting_id=posting_id,
                    reason=reason,
                ),
                metadata=self._as(unit),
            )
        except grpc.aio.AioRpcError as error:
            translated = _translate(error)
            if getattr(translated, "reason", "") == "REDEMPTION_ALREADY_CANCELLED":
                return  # an earlier attempt cancelled it
            raise translated from None

    async def close(self) -> None:
        await self._points.close()
