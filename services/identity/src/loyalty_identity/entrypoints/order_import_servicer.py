"""The OrderImportService over gRPC: request -> use case -> response. CreateOrderImport is a
client stream, stored as CreateMemberImport's upload is: one transaction (the import, its file's
parts sealed as they arrive, its audit entry), a part in memory at a time, a retry with the
same request id answered with the first import."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

import grpc
from loyalty.identity.v1 import order_import_pb2 as pb
from loyalty.identity.v1.order_import_pb2_grpc import OrderImportServiceServicer
from loyalty_kit.caller import confining_unit
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.idempotency import validate_request_id
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.servicers import UnitOfWorkServicer

from loyalty_identity.bootstrap import Identity
from loyalty_identity.entrypoints import order_import_convert as convert
from loyalty_identity.entrypoints.import_servicer import Upload, _operator
from loyalty_identity.service_layer import order_imports
from loyalty_identity.service_layer.ports import OrderImportWork
from loyalty_identity.service_layer.uow import IdentityUnitOfWork

SERVICE = "loyalty.identity.v1.OrderImportService"


class OrderUpload(Upload):
    """The member imports' upload (counted, bounded, hashed, stored in 1 MiB parts), into an
    order import's file."""

    def __init__(self, work: OrderImportWork, import_id: str, max_bytes: int) -> None:
        super().__init__(work, import_id, max_bytes)
        self.orders = work.order_imports

    async def _store(self, part: bytes) -> None:
        await self.orders.add_part(self.import_id, self.parts, part)
        self.parts += 1


class OrderImportServicer(UnitOfWorkServicer[IdentityUnitOfWork], OrderImportServiceServicer):
    service = SERVICE

    def __init__(self, app: Identity) -> None:
        super().__init__(app.uow, app.clock)
        self.app = app

    async def CreateOrderImport(
        self,
        request_iterator: AsyncIterator[pb.CreateOrderImportRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.CreateOrderImportResponse:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or not first.HasField("spec"):
            raise InvalidArgument.of(
                [FieldViolation("spec", "required in the first message, with the request id")]
            )
        validate_request_id(first.request_id)
        spec = convert.spec_from(first.spec)
        now = self.clock()
        async with self.uow() as uow:
            job, fresh = await order_imports.create(
                uow, spec, _operator(), first.request_id, self._fingerprint(first), now
            )
            if not fresh:  # a retry: the first import, nothing stored again
                return pb.CreateOrderImportResponse(order_import=convert.import_message(job, now))
            upload = OrderUpload(uow, job.import_id, self.app.import_settings.max_file_bytes)
            await upload.add(first.content)
            async for message in messages:
                if message.HasField("spec") or message.request_id:
                    raise InvalidArgument.of(
                        [FieldViolation("spec", "only the first message names the spec")]
                    )
                await upload.add(message.content)
            await upload.close()
            job = await order_imports.uploaded(
                uow, job, upload.size, upload.digest.hexdigest(), now
            )
            await uow.commit()
        self.app.order_imports_waiting()
        return pb.CreateOrderImportResponse(order_import=convert.import_message(job, now))

    def _fingerprint(self, first: pb.CreateOrderImportRequest) -> str:
        body = first.spec.SerializeToString(deterministic=True)
        return hmac.new(self.app.keyring.index_key, body, hashlib.sha256).hexdigest()

    async def GetOrderImport(
        self, request: pb.GetOrderImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOrderImportResponse:
        import_id = convert.import_id_of(request.name)
        confined = confining_unit()
        job = await self._read(lambda uow: order_imports.get(uow, import_id, confined))
        return pb.GetOrderImportResponse(order_import=convert.import_message(job, self.clock()))

    async def ListOrderImports(
        self, request: pb.ListOrderImportsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrderImportsResponse:
        unit = confining_unit() or request.unit.strip() or None
        filters = {"unit": unit or ""}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)
        after = tuple(page.after) if page.after else None
        found, position = await self._read(
            lambda uow: order_imports.listed(uow, unit, after, page.size)  # type: ignore[arg-type]
        )
        now = self.clock()
        response = pb.ListOrderImportsResponse(
            order_imports=[convert.import_message(job, now) for job in found]
        )
        if position is not None:
            response.next_page_token = next_token(list(position), filters)
        return response

    async def CancelOrderImport(
        self, request: pb.CancelOrderImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelOrderImportResponse:
        import_id = convert.import_id_of(request.name)
        confined, operator = confining_unit(), _operator()
        now = self.clock()
        async with self.uow() as uow:
            job = await order_imports.cancel(uow, import_id, operator, confined, now)
            await uow.commit()
        return pb.CancelOrderImportResponse(order_import=convert.import_message(job, now))

    async def ListOrderImportRows(
        self, request: pb.ListOrderImportRowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOrderImportRowsResponse:
        import_id = convert.import_id_of(request.parent, "parent")
        outcome = convert.outcome_from(request.outcome)
        filters = {"parent": import_id, "outcome": outcome.value if outcome else ""}
        page = read_page(request.page_size, request.page_token, filters, default=100, maximum=1000)
        confined = confining_unit()
        rows, after = await self._read(
            lambda uow: order_imports.report(
                uow, import_id, confined, outcome, page.after or 0, page.size
            )
        )
        response = pb.ListOrderImportRowsResponse(rows=[convert.row_message(r) for r in rows])
        if after is not None:
            response.next_page_token = next_token(after, filters)
        return response
