"""The OrderImportService over gRPC: request -> use case -> response (the upload and the steps
every kind of import shares: `import_servicing.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from loyalty.identity.v1 import order_import_pb2 as pb
from loyalty.identity.v1.order_import_pb2_grpc import OrderImportServiceServicer

from loyalty_identity.entrypoints import order_import_convert as convert
from loyalty_identity.entrypoints.import_servicing import ImportServicer
from loyalty_identity.service_layer import order_imports

SERVICE = "loyalty.identity.v1.OrderImportService"


class OrderImportServicer(ImportServicer, OrderImportServiceServicer):
    service = SERVICE

    async def CreateOrderImport(
        self,
        request_iterator: AsyncIterator[pb.CreateOrderImportRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.CreateOrderImportResponse:
        job, now, fresh = await self._create(
            request_iterator,
            convert.spec_from,
            order_imports.create,
            lambda uow: uow.order_imports,
            order_imports.uploaded,
        )
        if fresh:
            self.app.order_imports_waiting()
        return pb.CreateOrderImportResponse(order_import=convert.import_message(job, now))

    async def GetOrderImport(
        self, request: pb.GetOrderImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOrderImportResponse:
        job, now = await self._get(convert.import_id_of(request.name), order_imports.get)
        return pb.GetOrderImportResponse(order_import=convert.import_message(job, now))

    async def ListOrderImports(
        self, request: pb.ListOrderImportsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrderImportsResponse:
        found, token = await self._listed(
            request.unit, request.page_size, request.page_token, order_imports.listed
        )
        now = self.clock()
        return pb.ListOrderImportsResponse(
            order_imports=[convert.import_message(job, now) for job in found],
            next_page_token=token,
        )

    async def CancelOrderImport(
        self, request: pb.CancelOrderImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelOrderImportResponse:
        job, now = await self._cancel(convert.import_id_of(request.name), order_imports.cancel)
        return pb.CancelOrderImportResponse(order_import=convert.import_message(job, now))

    async def ListOrderImportRows(
        self, request: pb.ListOrderImportRowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrderImportRowsResponse:
        outcome = convert.outcome_from(request.outcome)
        rows, token = await self._rows(
            convert.import_id_of(request.parent, "parent"),
            outcome,
            outcome.value if outcome else "",
            request.page_size,
            request.page_token,
            order_imports.report,
        )
        return pb.ListOrderImportRowsResponse(
            rows=[convert.row_message(r) for r in rows], next_page_token=token
        )
