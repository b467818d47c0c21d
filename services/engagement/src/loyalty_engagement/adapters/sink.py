"""The development sink: a message "sent" is kept in the engagement database, in the same
transaction as the step that sent it (ListMessages shows them, with their unsubscribe token);
the token is also kept by its hash, for Unsubscribe."""

from __future__ import annotations

from typing import Any

from loyalty_engagement.adapters.journeys import StoredMessage
from loyalty_engagement.service_layer.channels import keep_token


class DevelopmentSink:
    async def send(self, uow: Any, message: StoredMessage, entry_id: str, step: int) -> None:
        await uow.journeys.add_message(message, entry_id, step)
        await keep_token(uow, message)
