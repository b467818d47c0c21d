"""The gateway as the kit runs it: the HTTP server in front of the other services (routes
from their contracts, tokens for API clients), its own small database (API clients, answers of
composite calls kept for retries), and a gRPC server for the composite flows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.gateway.v1 import gateway_service_pb2_grpc
from loyalty_kit.server import ServiceContext, ServiceSpec

from loyalty_gateway.access import ACCESS
from loyalty_gateway.cli import clients
from loyalty_gateway.composite import SERVICE, composer_of, forwarded
from loyalty_gateway.http import http_job
from loyalty_gateway.settings import GatewaySettings


class GatewayServicer(gateway_service_pb2_grpc.GatewayServiceServicer):
    def __init__(self, context: ServiceContext) -> None:
        self.composer = composer_of(context)

    async def _call(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.composer.call(
            method, request, forwarded(context.invocation_metadata() or ())
        )

    async def GetMemberOverview(
        self, request: pb.GetMemberOverviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberOverviewResponse:
        answer: pb.GetMemberOverviewResponse = await self._call(
            "GetMemberOverview", request, context
        )
        return answer

    async def RecordPurchase(
        self, request: pb.RecordPurchaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordPurchaseResponse:
        answer: pb.RecordPurchaseResponse = await self._call("RecordPurchase", request, context)
        return answer

    async def RedeemAtCheckout(
        self, request: pb.RedeemAtCheckoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeemAtCheckoutResponse:
        answer: pb.RedeemAtCheckoutResponse = await self._call("RedeemAtCheckout", request, context)
        return answer

    async def RefundPurchase(
        self, request: pb.RefundPurchaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefundPurchaseResponse:
        answer: pb.RefundPurchaseResponse = await self._call("RefundPurchase", request, context)
        return answer

    async def ExportMemberData(
        self, request: pb.ExportMemberDataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportMemberDataResponse:
        answer: pb.ExportMemberDataResponse = await self._call("ExportMemberData", request, context)
        return answer


def checkout_recovery_job(context: ServiceContext) -> Callable[[], Awaitable[None]]:
    """Gives back checkouts cut short or left half given back (every replica runs it)."""

    async def run() -> None:
        every = GatewaySettings().checkout_recovery_seconds
        await composer_of(context).checkouts.recover_forever(context.stopping, every)

    return run


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(GatewayServicer(context), server)


SPEC = ServiceSpec(
    name="gateway",
    access=ACCESS,
    service_names=(SERVICE,),
    add_servicers=add_servicers,
    migrations="loyalty_gateway:migrations",
    publishes_events=False,
    port=lambda settings: settings.gateway_grpc_port,
    jobs=lambda context: [http_job(context), checkout_recovery_job(context)],
    commands={"clients": clients},
)
