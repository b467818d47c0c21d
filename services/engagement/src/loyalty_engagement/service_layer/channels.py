"""The channels' use cases: a unit's webhook endpoint set; a journey's message handed to the
webhook channel (stored with the step, queued as a delivery in the same transaction); the
delivery loop's round (due deliveries taken with FOR UPDATE SKIP LOCKED, sent signed, retried
with backoff, dead-lettered after the last attempt); a dead letter re-driven; a member
unsubscribed by a message's token (the consent withdrawn through identity, once)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from loyalty_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.logs import get_logger

from loyalty_engagement.adapters.channels import (
    DEAD,
    DELIVERED,
    PENDING,
    StoredDelivery,
    StoredEndpoint,
)
from loyalty_engagement.adapters.journeys import StoredMessage
from loyalty_engagement.adapters.sealing import SecretBox
from loyalty_engagement.domain import channels as domain
from loyalty_engagement.domain.channels import Backoff
from loyalty_engagement.service_layer.ports import ActionRefused
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork

log = get_logger("loyalty.engagement.channels")


class DeliveryNotFound(NotFound):
    reason = "DELIVERY_NOT_FOUND"


class DeliveryNotDead(FailedPrecondition):
    reason = "DELIVERY_NOT_DEAD"


class UnknownToken(NotFound):
    reason = "UNSUBSCRIBE_TOKEN_UNKNOWN"


class Sender(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        """The HTTP status (None: no answer) and a short description of a failure."""
        ...

    async def close(self) -> None: ...


class ConsentWithdrawal(Protocol):
    async def withdraw_consent(self, member_id: str, purpose: str, key: str) -> None: ...


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int
    backoff: Backoff
    batch: int = 20


def _bound(unit: str, purpose: str) -> str:
    return f"webhook:{unit}:{purpose}"


async def set_endpoint(
    uow: EngagementUnitOfWork,
    box: SecretBox,
    unit: str,
    purpose: str,
    url: str,
    secret: str,
    now: datetime,
) -> StoredEndpoint:
    bad: list[FieldViolation] = []
    if not unit:
        bad.append(FieldViolation("endpoint.unit", "a unit, or 'group'"))
    if problem := domain.url_problem(url):
        bad.append(FieldViolation("endpoint.url", problem))
    if len(secret) < domain.MIN_SECRET_CHARS:
        bad.append(
            FieldViolation("endpoint.secret", f"at least {domain.MIN_SECRET_CHARS} characters")
        )
    if bad:
        raise InvalidArgument.of(bad)
    endpoint = StoredEndpoint(unit, purpose, url, box.seal(secret, _bound(unit, purpose)), now)
    await uow.channels.set_endpoint(endpoint)
    return endpoint


async def keep_token(uow: EngagementUnitOfWork, message: StoredMessage) -> None:
    """Every message's unsubscribe token, by its hash."""
    await uow.channels.add_token(
        domain.token_hash(message.unsubscribe_token),
        message.message_id,
        message.member_id,
        message.purpose,
        message.sent_at,
    )


class WebhookChannel:
    """The `webhook` channel of a journey's `send_message`: the message is stored (ListMessages,
    without its token) and queued for the endpoint of the journey's unit for its purpose, else
    the group's; with neither the step is refused (NO_WEBHOOK_ENDPOINT)."""

    async def send(self, uow: Any, message: StoredMessage, entry_id: str, step: int) -> None:
        unit = await uow.channels.journey_unit(message.journey_id)
        endpoint = await uow.channels.endpoint((unit, GROUP), message.purpose)
        if endpoint is None:
            raise ActionRefused("NO_WEBHOOK_ENDPOINT")
        payload = json.dumps(
            {
                "message_id": message.message_id,
                "member_id": message.member_id,
                "journey": f"journeys/{message.journey_id}",
                "unit": unit,
                "purpose": message.purpose,
                "body": message.body,
                "unsubscribe_token": message.unsubscribe_token,
                "send_time": message.sent_at.isoformat(),
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        stored = StoredMessage(
            message.message_id,
            message.member_id,
            message.journey_id,
            message.channel,
            message.purpose,
            message.body,
            "",  # the token travels to the receiver only; kept by its hash
            message.sent_at,
        )
        await uow.journeys.add_message(stored, entry_id, step)
        await keep_token(uow, message)
        await uow.channels.queue(
            StoredDelivery(
                message.message_id,
                message.member_id,
                unit,
                message.purpose,
                endpoint.url,
                payload,
                PENDING,
                0,
                "",
                message.sent_at,
                message.sent_at,
            )
        )


async def deliver_due(
    uow_factory: Callable[[], EngagementUnitOfWork],
    sender: Sender,
    box: SecretBox,
    policy: DeliveryPolicy,
    clock: Callable[[], datetime],
) -> int:
    """One round of the delivery loop: the due deliveries (a batch, locked so that another
    replica's round passes them over) sent at once, each attempt recorded; how many were
    attempted."""
    async with uow_factory() as uow:
        due = await uow.channels.due(clock(), policy.batch)
        if not due:
            return 0
        endpoints = {}
        for d in due:
            endpoints[d.message_id] = await uow.channels.endpoint((d.unit, GROUP), d.purpose)
        outcomes = await asyncio.gather(
            *(_attempt(sender, box, d, endpoints[d.message_id]) for d in due)
        )
        now = clock()
        for delivery, (status, error) in zip(due, outcomes, strict=True):
            attempts = delivery.attempts + 1
            if status is not None and 200 <= status < 300:
                await uow.channels.record(delivery.message_id, DELIVERED, attempts, "", now, now)
                continue
            if attempts >= policy.max_attempts or not domain.retryable(status):
                log.warning(
                    "webhook delivery dead-lettered",
                    message_id=delivery.message_id,
                    attempts=attempts,
                    error=error,
                )
                await uow.channels.record(delivery.message_id, DEAD, attempts, error, now, None)
                continue
            retry_at = now + policy.backoff.after(attempts)
            await uow.channels.record(delivery.message_id, PENDING, attempts, error, retry_at, None)
        await uow.commit()
        return len(due)


async def _attempt(
    sender: Sender, box: SecretBox, delivery: StoredDelivery, endpoint: StoredEndpoint | None
) -> tuple[int | None, str]:
    if endpoint is None:
        return 410, "no webhook endpoint any more"  # not retryable: dead-lettered
    secret = box.open(endpoint.secret_sealed, _bound(endpoint.unit, endpoint.purpose))
    body = delivery.payload.encode()
    headers = {
        "Content-Type": "application/json",
        # The wall clock, not the service's: the receiver compares `t` with its own.
        domain.SIGNATURE_HEADER: domain.signature(secret, int(time.time()), body),
        domain.MESSAGE_ID_HEADER: delivery.message_id,
        domain.ATTEMPT_HEADER: str(delivery.attempts + 1),
    }
    return await sender.post(endpoint.url, body, headers)


async def redrive(uow: EngagementUnitOfWork, message_id: str, now: datetime) -> StoredDelivery:
    found = await uow.channels.delivery(message_id, for_update=True)
    if found is None:
        raise DeliveryNotFound(f"deliveries/{message_id} does not exist")
    if found.state != DEAD:
        raise DeliveryNotDead(f"a {found.state} delivery is not re-driven")
    await uow.channels.record(message_id, PENDING, 0, found.last_error, now, None)
    again = await uow.channels.delivery(message_id)
    assert again is not None
    return again


async def unsubscribe(
    uow: EngagementUnitOfWork, identity: ConsentWithdrawal, token: str, now: datetime
) -> str:
    """Withdraw the consent the token's message was sent under; the purpose. Once: a token used
    before answers the same without calling identity again (and identity's idempotency key,
    derived from the token, covers a crash between its answer and this commit)."""
    if not token or len(token) > 200:
        raise InvalidArgument.of([FieldViolation("token", "an unsubscribe token")])
    digest = domain.token_hash(token)
    found = await uow.channels.token(digest)
    if found is None:
        raise UnknownToken("no message has this unsubscribe token")
    if found.used_at is None:
        await identity.withdraw_consent(found.member_id, found.purpose, f"unsubscribe-{digest}")
        await uow.channels.use_token(digest, now)
    return found.purpose
