"""The gateway as the kit runs it: the HTTP server in front of the other services (routes
from their contracts, tokens for API clients), its own small database (API clients, answers of
composite calls kept for retries), and a gRPC server for the composite flows."""

from __future__ import annotations

import grpc
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.gateway.v1 import gateway_service_pb2_grpc
from loyalty_kit.server import ServiceContext, ServiceSpec

from loyalty_gateway.backends import shared_backends
from loyalty_gateway.cli import clients
from loyalty_gateway.composite import SERVICE, Composer, forwarded
from loyalty_gateway.http import http_job
from loyalty_gateway.settings import GatewaySettings


class GatewayServicer(gateway_service_pb2_grpc.GatewayServiceServicer):
    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.composer = Composer(
            shared_backends(context), GatewaySettings().request_deadline_seconds
        )

    async def GetMemberOverview(
        self, request: pb.GetMemberOverviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberOverviewResponse:
        md = forwarded(context.invocation_metadata() or ())
        return await self.composer.overview(request, md)

    async def RecordPurchase(
        self, request: pb.RecordPurchaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordPurchaseResponse:
        md = forwarded(context.invocation_metadata() or ())
        return await self.composer.record_purchase(request, md, self.context.uow)


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(GatewayServicer(context), server)


SPEC = ServiceSpec(
    name="gateway",
    service_names=(SERVICE,),
    add_servicers=add_servicers,
    migrations="loyalty_gateway:migrations",
    publishes_events=False,
    port=lambda settings: settings.gateway_grpc_port,
    jobs=lambda context: [http_job(context)],
    commands={"clients": clients},
)
