"""The TransactionalMessageService over gRPC: a transactional text sent to a phone (another
service, on its own account, with `messages:send`), and the development sink's messages to a
phone (admins: tests and `make run` read sign-in codes there)."""

from __future__ import annotations

import grpc
from loyalty.engagement.v1 import transactional_pb2 as pb
from loyalty.engagement.v1.transactional_pb2_grpc import TransactionalMessageServiceServicer
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import moment_of, timestamp

from loyalty_engagement.bootstrap import Engagement
from loyalty_engagement.entrypoints.servicer import _before
from loyalty_engagement.service_layer import transactional
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork

SERVICE = "loyalty.engagement.v1.TransactionalMessageService"
RESOURCE = "transactionalMessages/"


class TransactionalServicer(
    UnitOfWorkServicer[EngagementUnitOfWork], TransactionalMessageServiceServicer
):
    service = SERVICE

    def __init__(self, app: Engagement) -> None:
        super().__init__(app.uow, app.clock)
        self.app = app

    async def SendTransactionalMessage(
        self, request: pb.SendTransactionalMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendTransactionalMessageResponse:
        message = transactional.Transactional(
            phone=request.phone.strip(),
            body=request.body,
            kind=request.kind.strip(),
            unit=request.unit.strip(),
            expires_at=moment_of(request, "expire_time"),
        )
        async with self.uow() as uow:
            sent = await transactional.send(uow, self.app.secrets, message, self.clock())
            await uow.commit()
        return pb.SendTransactionalMessageResponse(
            name=f"{RESOURCE}{sent.message_id}", channel=sent.channel
        )

    async def ListTransactionalMessages(
        self, request: pb.ListTransactionalMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTransactionalMessagesResponse:
        phone = request.phone.strip()
        filters = {"phone": phone}
        page = read_page(request.page_size, request.page_token, filters, default=20, maximum=100)
        before = _before(page.after)
        now = self.clock()
        found = await self._read(
            lambda uow: transactional.kept(uow, self.app.secrets, phone, now, before, page.size + 1)
        )
        more = len(found) > page.size
        found = found[: page.size]
        last = found[-1] if found else None
        token = (
            next_token([last.sent_at.isoformat(), last.message_id], filters)
            if more and last
            else ""
        )
        return pb.ListTransactionalMessagesResponse(
            messages=[
                pb.TransactionalMessage(
                    name=f"{RESOURCE}{m.message_id}",
                    phone=m.phone,
                    kind=m.kind,
                    body=m.body,
                    send_time=timestamp(m.sent_at),
                    expire_time=timestamp(m.expires_at),
                )
                for m in found
            ],
            next_page_token=token,
        )
