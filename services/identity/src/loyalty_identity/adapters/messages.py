"""Sign-in codes and erasure confirmation codes sent through the engagement service's
transactional channel, on identity's own account (`messages:send`): the development sink keeps
them, or the group's webhook for transactional SMS takes them. Engagement not answering is
UNAVAILABLE to the member."""

from __future__ import annotations

from datetime import datetime

import grpc
from loyalty.engagement.v1 import transactional_pb2 as pb
from loyalty.engagement.v1.transactional_pb2_grpc import TransactionalMessageServiceStub
from loyalty_kit.caller import Caller
from loyalty_kit.errors import Unavailable
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.logs import get_logger
from loyalty_kit.peers import peer
from loyalty_kit.scopes import MESSAGES_SEND
from loyalty_kit.settings import Settings
from loyalty_kit.timestamps import timestamp

log = get_logger("loyalty.identity.messages")
CALLER = Caller(unit=GROUP, client_id="identity-sign-in", scopes=frozenset({MESSAGES_SEND}))
KIND = "sign_in_code"
ERASURE_KIND = "erasure_code"


class EngagementMessages:
    def __init__(self, settings: Settings) -> None:
        self._peer = peer(settings, "identity", "engagement", TransactionalMessageServiceStub)

    async def send_code(self, phone: str, code: str, expires_at: datetime) -> None:
        body = f"Your sign-in code is {code}. It is valid for 5 minutes; never share it."
        await self._send(phone, body, KIND, expires_at)

    async def send_erasure_code(self, phone: str, code: str, expires_at: datetime) -> None:
        body = (
            f"Your code to confirm erasing your membership is {code}. It is valid for 15 "
            "minutes. If you did not ask for this, cancel the request in the app."
        )
        await self._send(phone, body, ERASURE_KIND, expires_at)

    async def _send(self, phone: str, body: str, kind: str, expires_at: datetime) -> None:
        try:
            await self._peer.stub.SendTransactionalMessage(
                pb.SendTransactionalMessageRequest(
                    phone=phone, body=body, kind=kind, expire_time=timestamp(expires_at)
                ),
                metadata=self._peer.metadata(CALLER),
                timeout=5,
            )
        except grpc.aio.AioRpcError as error:
            log.warning("code not sent", kind=kind, code=error.code().name)
            raise Unavailable(
                "the code could not be sent now: try again shortly",
                reason="MESSAGES_UNAVAILABLE",
            ) from None

    async def close(self) -> None:
        await self._peer.close()
