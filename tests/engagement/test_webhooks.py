"""The webhook channel against the running engagement service: a journey's message POSTed as
signed JSON to the endpoint a unit set, retried with backoff while the receiver fails, kept as a
dead letter when it never answers well, and re-driven from there."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest_asyncio
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty_engagement.adapters.channels import PENDING, StoredDelivery
from loyalty_engagement.bootstrap import Engagement as EngagementApp
from loyalty_engagement.service_layer.channels import deliver_due
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService

from tests.engagement.conftest import Engagement, rid, until
from tests.engagement.receiver import Receiver
from tests.support.rpc import fails

SMS = member_pb2.CONSENT_PURPOSE_MARKETING_SMS
PUSH = member_pb2.CONSENT_PURPOSE_MARKETING_PUSH


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    found = await Receiver(secret=f"whsec-{uuid.uuid4().hex}").start()
    yield found
    await found.stop()


async def endpoint(
    engagement: Engagement,
    receiver: Receiver,
    unit: str,
    purpose: member_pb2.ConsentPurpose.ValueType = SMS,
) -> pb.WebhookEndpoint:
    response = await engagement.as_().SetWebhookEndpoint(
        pb.SetWebhookEndpointRequest(
            endpoint=pb.WebhookEndpoint(
                unit=unit, purpose=purpose, url=receiver.url, secret=receiver.secret
            ),
            request_id=rid(),
        )
    )
    set_: pb.WebhookEndpoint = response.endpoint
    return set_


def team(unit: str) -> Caller:
    return Caller(unit=unit, client_id=f"{unit}-crm", scopes=frozenset({"engagement:write"}))


async def unit_journey(engagement: Engagement, journey: pb.Journey) -> pb.Journey:
    """An active journey of the unit's own team (paused when the test ends)."""
    journey.state = pb.JOURNEY_STATE_ACTIVE
    response = await engagement.as_(team(journey.unit)).CreateJourney(
        pb.CreateJourneyRequest(journey=journey, request_id=rid())
    )
    engagement.made.append(response.journey.name)
    created: pb.Journey = response.journey
    return created


async def webhook_message(engagement: Engagement, unit: str, body: str) -> tuple[str, str]:
    """A journey of `unit` sending `body` by webhook on registration, and a member registering
    there with the SMS consent: (member ID, message ID)."""
    journey = await unit_journey(
        engagement,
        pb.Journey(
            display_name=f"webhook {body}",
            unit=unit,
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_MEMBER_REGISTERED),
            conditions=pb.Conditions(units=[unit]),
            steps=[pb.Step(send_message=pb.SendMessage(purpose=SMS, body=body, channel="webhook"))],
        ),
    )
    member_id = await engagement.member(unit, SMS)
    entries = await until(
        lambda: engagement.entries(journey.name, member_id),
        lambda e: bool(e) and e[0].state != pb.ENTRY_STATE_PENDING,
    )
    assert [(s.outcome) for s in entries[0].steps] == ["done"], entries
    return member_id, entries[0].steps[0].detail


async def delivery(engagement: Engagement, message_id: str) -> pb.Delivery | None:
    response = await engagement.as_().ListDeliveries(pb.ListDeliveriesRequest(page_size=200))
    name = f"deliveries/{message_id}"
    return next((d for d in response.deliveries if d.name == name), None)


async def test_a_receiver_failing_twice_gets_the_signed_message_once_on_the_third_attempt(
    engagement: Engagement, receiver: Receiver
) -> None:
    set_ = await endpoint(engagement, receiver, "mall")
    assert set_.url == receiver.url and not set_.secret  # the secret is never answered
    receiver.answer_with(503, 500, 200)
    body = f"Spring sale {uuid.uuid4().hex[:6]}"
    member_id, message_id = await webhook_message(engagement, "mall", body)

    found = await until(
        lambda: delivery(engagement, message_id),
        lambda d: d is not None and d.state == pb.DELIVERY_STATE_DELIVERED,
    )
    assert found is not None and found.state == pb.DELIVERY_STATE_DELIVERED, found
    assert found.attempts == 3
    mine = [r for r in receiver.received if r.message_id == message_id]
    assert [(r.attempt, r.answered) for r in mine] == [(1, 503), (2, 500), (3, 200)]
    assert all(r.signed for r in mine)
    assert len({r.body for r in mine}) == 1  # the same message each time
    payload = mine[0].payload
    assert (payload["member_id"], payload["body"], payload["purpose"]) == (
        member_id,
        body,
        "CONSENT_PURPOSE_MARKETING_SMS",
    )
    assert len(payload["unsubscribe_token"]) >= 32
    # Stored as sent by webhook; its token travels to the receiver only.
    sent = await engagement.messages(member_id)
    assert [(m.channel, m.body, m.unsubscribe_token) for m in sent] == [("webhook", body, "")]


async def test_a_receiver_that_always_fails_leaves_a_dead_letter_that_can_be_redriven(
    engagement: Engagement, receiver: Receiver
) -> None:
    await endpoint(engagement, receiver, "hotel")
    receiver.answer_with(503)
    _member_id, message_id = await webhook_message(engagement, "hotel", "Your stay")

    dead = await until(
        lambda: delivery(engagement, message_id),
        lambda d: d is not None and d.state == pb.DELIVERY_STATE_DEAD,
    )
    assert dead is not None and dead.state == pb.DELIVERY_STATE_DEAD, dead
    assert (dead.attempts, dead.last_error) == (4, "HTTP 503")  # the suite's 4 attempts
    listed = await engagement.as_().ListDeliveries(
        pb.ListDeliveriesRequest(state=pb.DELIVERY_STATE_DEAD, page_size=200)
    )
    assert dead.name in [d.name for d in listed.deliveries]
    assert {d.state for d in listed.deliveries} == {pb.DELIVERY_STATE_DEAD}
    # Another unit's team neither sees nor re-drives it.
    cinema = engagement.as_(team("cinema"))
    theirs = await cinema.ListDeliveries(pb.ListDeliveriesRequest(page_size=200))
    assert dead.name not in [d.name for d in theirs.deliveries]
    refused = await fails(
        cinema.RedriveDelivery(pb.RedriveDeliveryRequest(name=dead.name, request_id=rid()))
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")

    receiver.answer_with(200)
    redriven = await engagement.as_().RedriveDelivery(
        pb.RedriveDeliveryRequest(name=dead.name, request_id=rid())
    )
    assert redriven.delivery.state == pb.DELIVERY_STATE_PENDING
    found = await until(
        lambda: delivery(engagement, message_id),
        lambda d: d is not None and d.state == pb.DELIVERY_STATE_DELIVERED,
    )
    assert found is not None and (found.state, found.attempts) == (
        pb.DELIVERY_STATE_DELIVERED,
        1,
    )
    mine = [r.answered for r in receiver.received if r.message_id == message_id]
    assert mine == [503, 503, 503, 503, 200]
    again = await fails(
        engagement.as_().RedriveDelivery(
            pb.RedriveDeliveryRequest(name=dead.name, request_id=rid())
        )
    )
    assert (again.code, again.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "DELIVERY_NOT_DEAD")


async def test_a_receiver_refusing_the_message_dead_letters_it_at_once(
    engagement: Engagement, receiver: Receiver
) -> None:
    await endpoint(engagement, receiver, "cinema")
    receiver.answer_with(400)
    _member_id, message_id = await webhook_message(engagement, "cinema", "Tonight's film")
    dead = await until(
        lambda: delivery(engagement, message_id),
        lambda d: d is not None and d.state == pb.DELIVERY_STATE_DEAD,
    )
    assert dead is not None and (dead.state, dead.attempts, dead.last_error) == (
        pb.DELIVERY_STATE_DEAD,
        1,
        "HTTP 400",
    )


async def test_an_endpoint_is_refused_with_each_bad_field_named(engagement: Engagement) -> None:
    refused = await fails(
        engagement.as_().SetWebhookEndpoint(
            pb.SetWebhookEndpointRequest(
                endpoint=pb.WebhookEndpoint(
                    unit="mall", purpose=SMS, url="http://example.com/hook", secret="short"
                ),
                request_id=rid(),
            )
        )
    )
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(refused.fields) == ["endpoint.secret", "endpoint.url"]


async def test_a_message_with_no_endpoint_for_its_unit_or_the_group_fails_its_step(
    engagement: Engagement,
) -> None:
    journey = await unit_journey(
        engagement,
        pb.Journey(
            display_name="webhook without endpoint",
            unit="hotel",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_MEMBER_REGISTERED),
            conditions=pb.Conditions(units=["hotel"]),
            steps=[
                pb.Step(send_message=pb.SendMessage(purpose=PUSH, body="hi", channel="webhook"))
            ],
        ),
    )
    member_id = await engagement.member("hotel", PUSH)
    entries = await until(
        lambda: engagement.entries(journey.name, member_id),
        lambda e: bool(e) and e[0].state != pb.ENTRY_STATE_PENDING,
    )
    assert entries[0].state == pb.ENTRY_STATE_FAILED
    assert [(s.outcome, s.detail) for s in entries[0].steps] == [("failed", "NO_WEBHOOK_ENDPOINT")]


async def test_delivery_loops_running_at_once_send_each_message_once(
    engagement_service: RunningService, engagement: Engagement, receiver: Receiver
) -> None:
    """Replicas' loops take due deliveries with FOR UPDATE SKIP LOCKED: four rounds at once over
    60 due deliveries send each one once. (Due an hour from now, so the service's own loop
    leaves them to these rounds.)"""
    unit = f"u-{uuid.uuid4().hex[:8]}"
    await endpoint(engagement, receiver, unit)
    receiver.answer_with(200)
    app: EngagementApp = engagement_service.root
    later = datetime.now(UTC) + timedelta(hours=1)
    ids = [str(uuid.uuid4()) for _ in range(60)]
    async with app.uow() as uow:
        for message_id in ids:
            payload = json.dumps({"message_id": message_id})
            await uow.channels.queue(
                StoredDelivery(
                    message_id,
                    "m",
                    unit,
                    "CONSENT_PURPOSE_MARKETING_SMS",
                    receiver.url,
                    payload,
                    PENDING,
                    0,
                    "",
                    later,
                    later,
                )
            )
        await uow.commit()

    def clock() -> datetime:
        return later + timedelta(minutes=1)

    async def drain() -> int:
        sent = 0
        while taken := await deliver_due(app.uow, app.sender, app.secrets, app.delivery, clock):
            sent += taken
        return sent

    rounds = await asyncio.gather(*(drain() for _ in range(4)))

    assert sum(rounds) == len(ids)
    mine = [r.message_id for r in receiver.received if r.message_id in set(ids)]
    assert sorted(mine) == sorted(ids)  # each once
    found = [await delivery(engagement, message_id) for message_id in ids[:3]]
    assert [(d.state, d.attempts) for d in found if d] == [(pb.DELIVERY_STATE_DELIVERED, 1)] * 3
