"""Transactional messages against the running engagement service: a text another service sends
to a phone on its own account (`messages:send`), kept sealed by the development sink until it
expires and listed for admins only, or POSTed signed to the unit's webhook endpoint for
transactional SMS when one is set."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest_asyncio
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.engagement.v1 import engagement_service_pb2_grpc, transactional_pb2_grpc
from loyalty.engagement.v1 import transactional_pb2 as pb
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp
from sqlalchemy.engine import make_url

from tests.engagement.receiver import Receiver
from tests.support.clients import As
from tests.support.clock import Clock
from tests.support.rpc import fails

SENDER = Caller(unit="group", client_id="identity-sign-in", scopes=frozenset({"messages:send"}))
ADMIN = Caller(unit="group", client_id="messages-admin", scopes=frozenset({"admin"}))
READER = Caller(unit="group", client_id="group-crm", scopes=frozenset({"engagement:read"}))


def new_phone() -> str:
    return f"+86137{random.randrange(10**8):08d}"


@pytest_asyncio.fixture(loop_scope="session")
async def channel(engagement_service: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(engagement_service.target) as found:
        yield found


def messages(channel: grpc.aio.Channel, caller: Caller) -> As:
    return As(transactional_pb2_grpc.TransactionalMessageServiceStub, channel, caller)


async def send(channel: grpc.aio.Channel, phone: str, body: str, unit: str = "") -> str:
    sent = await messages(channel, SENDER).SendTransactionalMessage(
        pb.SendTransactionalMessageRequest(phone=phone, body=body, kind="sign_in_code", unit=unit)
    )
    return str(sent.channel)


async def test_the_sink_keeps_a_message_sealed_for_admins_until_it_expires(
    channel: grpc.aio.Channel, engagement_service: RunningService, clock: Clock
) -> None:
    phone = new_phone()
    assert await send(channel, phone, "Your sign-in code is 123456.") == "dev"
    assert await send(channel, phone, "Your sign-in code is 654321.") == "dev"
    listed = await messages(channel, ADMIN).ListTransactionalMessages(
        pb.ListTransactionalMessagesRequest(phone=phone)
    )
    assert [m.body[-7:-1] for m in listed.messages] == ["654321", "123456"]  # newest first
    assert {(m.phone, m.kind) for m in listed.messages} == {(phone, "sign_in_code")}
    # At rest neither the phone nor the text is in clear.
    url = make_url(str(engagement_service.context.settings.service_database_url("engagement")))
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        rows = await conn.fetch(
            "SELECT t::text AS row FROM transactional_messages t WHERE message_id = ANY($1)",
            [m.name.removeprefix("transactionalMessages/") for m in listed.messages],
        )
    finally:
        await conn.close()
    assert len(rows) == 2
    assert not any(phone[1:] in r["row"] or "123456" in r["row"] for r in rows)
    # Others (a marketing team) never read it; only a service with messages:send sends.
    refused = await fails(
        messages(channel, READER).ListTransactionalMessages(
            pb.ListTransactionalMessagesRequest(phone=phone)
        )
    )
    assert refused.reason == "SCOPE_REQUIRED"
    unsent = await fails(
        messages(channel, READER).SendTransactionalMessage(
            pb.SendTransactionalMessageRequest(phone=phone, body="x", kind="sign_in_code")
        )
    )
    assert unsent.reason == "SCOPE_REQUIRED"
    # A day later (the default lifetime) the sink has forgotten them.
    clock.advance(days=1, seconds=1)
    try:
        later = await messages(channel, ADMIN).ListTransactionalMessages(
            pb.ListTransactionalMessagesRequest(phone=phone)
        )
    finally:
        clock.reset()
    assert list(later.messages) == []


async def test_a_message_with_an_expiry_is_forgotten_then(
    channel: grpc.aio.Channel, clock: Clock
) -> None:
    phone = new_phone()
    expiry = datetime.now(UTC) + timedelta(minutes=5)
    await messages(channel, SENDER).SendTransactionalMessage(
        pb.SendTransactionalMessageRequest(
            phone=phone, body="code 1", kind="sign_in_code", expire_time=timestamp(expiry)
        )
    )
    listed = await messages(channel, ADMIN).ListTransactionalMessages(
        pb.ListTransactionalMessagesRequest(phone=phone)
    )
    assert [m.expire_time.ToDatetime(UTC) for m in listed.messages] == [expiry]
    clock.advance(minutes=5, seconds=1)
    try:
        later = await messages(channel, ADMIN).ListTransactionalMessages(
            pb.ListTransactionalMessagesRequest(phone=phone)
        )
    finally:
        clock.reset()
    assert list(later.messages) == []


async def test_bad_messages_are_refused_field_by_field(channel: grpc.aio.Channel) -> None:
    refused = await fails(
        messages(channel, SENDER).SendTransactionalMessage(
            pb.SendTransactionalMessageRequest(phone="13800138000", body=" ", kind="Sign In")
        )
    )
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(refused.fields) == {"phone", "body", "kind"}


async def test_a_transactional_webhook_gets_the_message_signed_instead_of_the_sink(
    channel: grpc.aio.Channel,
) -> None:
    receiver = await Receiver(secret=f"whsec-{uuid.uuid4().hex}").start()
    unit = f"u{uuid.uuid4().hex[:8]}"
    try:
        set_ = await As(
            engagement_service_pb2_grpc.EngagementServiceStub, channel, ADMIN
        ).SetWebhookEndpoint(
            engagement_pb.SetWebhookEndpointRequest(
                endpoint=engagement_pb.WebhookEndpoint(
                    unit=unit, url=receiver.url, secret=receiver.secret, transactional=True
                ),
                request_id=uuid.uuid4().hex,
            )
        )
        assert set_.endpoint.transactional and not set_.endpoint.purpose
        phone = new_phone()
        assert await send(channel, phone, "Your sign-in code is 777777.", unit) == "webhook"
        deadline = asyncio.get_running_loop().time() + 20
        while not receiver.received and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        (got,) = receiver.received
        assert got.signed
        assert {k: got.payload[k] for k in ("phone", "body", "kind", "unit")} == {
            "phone": phone,
            "body": "Your sign-in code is 777777.",
            "kind": "sign_in_code",
            "unit": unit,
        }
        listed = await messages(channel, ADMIN).ListTransactionalMessages(
            pb.ListTransactionalMessagesRequest(phone=phone)
        )
        assert list(listed.messages) == []  # not in the sink
    finally:
        await receiver.stop()
