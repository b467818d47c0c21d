"""The gateway's gRPC methods (`loyalty.gateway.v1.GatewayService`): each hands its request
to its flow, with the caller's credential, request id and trace context to pass on."""

from __future__ import annotations

import grpc
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.gateway.v1 import gateway_service_pb2_grpc

from loyalty_gateway.adapters.services import Metadata, forwarded
from loyalty_gateway.flows import Flows


def passed_on(context: grpc.aio.ServicerContext) -> Metadata:
    return forwarded(context.invocation_metadata() or ())


class GatewayServicer(gateway_service_pb2_grpc.GatewayServiceServicer):
    def __init__(self, flows: Flows) -> None:
        self.flows = flows

    async def GetMemberOverview(
        self, request: pb.GetMemberOverviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberOverviewResponse:
        return await self.flows.overview(request, passed_on(context))

    async def RecordPurchase(
        self, request: pb.RecordPurchaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordPurchaseResponse:
        return await self.flows.record_purchase(request, passed_on(context))

    async def RedeemAtCheckout(
        self, request: pb.RedeemAtCheckoutRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeemAtCheckoutResponse:
        return await self.flows.checkout(request, passed_on(context))

    async def RefundPurchase(
        self, request: pb.RefundPurchaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefundPurchaseResponse:
        return await self.flows.refund(request, passed_on(context))

    async def ExportMemberData(
        self, request: pb.ExportMemberDataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportMemberDataResponse:
        return await self.flows.export(request, passed_on(context))

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditEntriesResponse:
        return await self.flows.audit(request, passed_on(context))
