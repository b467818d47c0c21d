"""Transactional messages: what a member asked for (a sign-in code), not marketing, so sent
without a consent and outside quiet hours. The unit's webhook endpoint for transactional SMS
(else the group's) takes it when one is set, queued as a signed delivery like every other;
otherwise the development sink keeps it, the phone and the text sealed, until it expires."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations
from loyalty_kit.kernel.units import GROUP

from loyalty_engagement.adapters.channels import PENDING, StoredDelivery, StoredTransactional
from loyalty_engagement.adapters.sealing import SecretBox
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork

# Stored as a webhook endpoint's purpose: the endpoint that takes transactional SMS.
TRANSACTIONAL_SMS = "TRANSACTIONAL_SMS"
DEV, WEBHOOK = "dev", "webhook"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_BODY = 500
DEFAULT_LIFETIME = timedelta(days=1)
LONGEST_LIFETIME = timedelta(days=7)
_PHONE = "transactional-phone"


@dataclass(frozen=True)
class Transactional:
    phone: str
    body: str
    kind: str
    unit: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Sent:
    message_id: str
    channel: str


@dataclass(frozen=True)
class Kept:
    message_id: str
    phone: str
    kind: str
    body: str
    sent_at: datetime
    expires_at: datetime


def phone_problem(phone: str) -> str:
    return "" if E164.match(phone) else "a phone in E.164, such as +8613800138000"


def _validate(message: Transactional, now: datetime) -> None:
    problems = Violations()
    if problem := phone_problem(message.phone):
        problems.add("phone", problem)
    if not message.body.strip() or len(message.body) > MAX_BODY:
        problems.add("body", f"required, at most {MAX_BODY} characters")
    if not KIND.match(message.kind):
        problems.add("kind", "a short lower-case name such as sign_in_code")
    if message.expires_at is not None and not (now < message.expires_at <= now + LONGEST_LIFETIME):
        problems.add("expire_time", "in the future, within 7 days")
    problems.raise_if_any()


def _bound(message_id: str) -> str:
    return f"transactional:{message_id}"


async def send(
    uow: EngagementUnitOfWork, box: SecretBox, message: Transactional, now: datetime
) -> Sent:
    _validate(message, now)
    unit = message.unit or GROUP
    message_id = str(uuid.uuid4())
    expires_at = message.expires_at or now + DEFAULT_LIFETIME
    endpoint = await uow.channels.endpoint(tuple(dict.fromkeys((unit, GROUP))), TRANSACTIONAL_SMS)
    if endpoint is not None:
        payload = json.dumps(
            {
                "message_id": message_id,
                "kind": message.kind,
                "unit": unit,
                "phone": message.phone,
                "body": message.body,
                "send_time": now.isoformat(),
                "expire_time": expires_at.isoformat(),
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        await uow.channels.queue(
            StoredDelivery(
                message_id,
                "",  # a transactional message may go to a phone that is no member's yet
                endpoint.unit,
                TRANSACTIONAL_SMS,
                endpoint.url,
                payload,
                PENDING,
                0,
                "",
                now,
                now,
            )
        )
        return Sent(message_id, WEBHOOK)
    sealed = box.seal(
        json.dumps({"phone": message.phone, "body": message.body}, ensure_ascii=False),
        _bound(message_id),
    )
    await uow.transactional.forget_expired(now)
    await uow.transactional.keep(
        StoredTransactional(
            message_id,
            box.keyed_hash(message.phone, _PHONE),
            message.kind,
            unit,
            sealed,
            now,
            expires_at,
        )
    )
    return Sent(message_id, DEV)


async def kept(
    uow: EngagementUnitOfWork,
    box: SecretBox,
    phone: str,
    now: datetime,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Kept]:
    """The sink's unexpired messages to `phone`, newest first."""
    if problem := phone_problem(phone):
        raise InvalidArgument.of([FieldViolation("phone", problem)])
    found = await uow.transactional.of_phone(box.keyed_hash(phone, _PHONE), now, before, limit)
    result = []
    for stored in found:
        opened = json.loads(box.open(stored.sealed, _bound(stored.message_id)))
        result.append(
            Kept(
                stored.message_id,
                opened["phone"],
                stored.kind,
                opened["body"],
                stored.created_at,
                stored.expires_at,
            )
        )
    return result
