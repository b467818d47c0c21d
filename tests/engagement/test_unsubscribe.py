"""A member unsubscribes through the link in a message, at the gateway with no credentials: GET
shows a page and changes nothing (link scanners fetch links), POST withdraws the consent through
identity, once however often it is sent; the member's next message is then not sent. A client
guessing tokens fast is answered 429 with Retry-After once past its address's limit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty_gateway.settings import GatewaySettings

from tests.engagement.conftest import Engagement, until
from tests.engagement.test_journeys import tier_changed
from tests.gateway.conftest import Gateway, catalogue, gateway, points, programme, tiers
from tests.points.conftest import ADMIN
from tests.support.clients import As
from tests.support.events import publish

__all__ = ["catalogue", "gateway", "points", "programme", "tiers"]

pytestmark = pytest.mark.asyncio(loop_scope="session")
SMS = member_pb2.CONSENT_PURPOSE_MARKETING_SMS


async def granted(engagement: Engagement, member_id: str) -> set[int]:
    response = await As(
        identity_service_pb2_grpc.IdentityServiceStub, engagement.identity_channel, ADMIN
    ).GetMember(identity_pb.GetMemberRequest(name=f"members/{member_id}"))
    return {c.purpose for c in response.member.consents if c.granted}


async def test_the_unsubscribe_link_withdraws_the_consent_and_the_next_message_is_not_sent(
    gateway: Gateway, engagement: Engagement
) -> None:
    tier = f"t-{uuid.uuid4().hex[:8]}"
    journey = await engagement.journey(
        pb.Journey(
            display_name="tier news",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=[pb.Step(send_message=pb.SendMessage(purpose=SMS, body="Welcome up"))],
        )
    )
    member_id = await engagement.member("mall", SMS)
    first = datetime.now(UTC)
    await publish(engagement.settings, "tiers", tier_changed(member_id, tier, first))
    sent = await until(lambda: engagement.messages(member_id), lambda m: bool(m))
    assert len(sent) == 1, sent
    token = sent[0].unsubscribe_token

    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as anyone:  # no credentials
        shown = await anyone.get("/v1/unsubscribe", params={"token": token})
        assert shown.status_code == 200, shown.text
        assert "<form" in shown.text and token in shown.text
        assert SMS in await granted(engagement, member_id)  # a GET changes nothing

        done = await anyone.post("/v1/unsubscribe", json={"token": token})
        assert done.status_code == 200, done.text
        assert done.json() == {"purpose": "CONSENT_PURPOSE_MARKETING_SMS"}
        assert SMS not in await granted(engagement, member_id)
        # Again (a form post of the page's button, a one-click post): the same answer.
        again = await anyone.post("/v1/unsubscribe", data={"token": token})
        assert again.status_code == 200, again.text
        one_click = await anyone.post(
            "/v1/unsubscribe",
            params={"token": token},
            data={"List-Unsubscribe": "One-Click"},
        )
        assert one_click.status_code == 200, one_click.text

        unknown = await anyone.post("/v1/unsubscribe", json={"token": uuid.uuid4().hex})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["details"][0]["reason"] == "UNSUBSCRIBE_TOKEN_UNKNOWN"
        missing = await anyone.post("/v1/unsubscribe", json={})
        assert missing.status_code == 400

    # The consent history shows one withdrawal, however often the link was used.
    history = await As(
        identity_service_pb2_grpc.IdentityServiceStub, engagement.identity_channel, ADMIN
    ).ListConsentEvents(identity_pb.ListConsentEventsRequest(member=f"members/{member_id}"))
    withdrawals = [e for e in history.consent_events if e.purpose == SMS and not e.granted]
    assert len(withdrawals) == 1

    later = first + timedelta(seconds=1)
    await publish(engagement.settings, "tiers", tier_changed(member_id, tier, later))
    entries = await until(
        lambda: engagement.entries(journey.name, member_id), lambda e: len(e) == 2
    )
    assert [[s.outcome for s in e.steps] for e in entries] == [["no_consent"], ["done"]]
    assert len(await engagement.messages(member_id)) == 1


def _from_address() -> httpx.AsyncHTTPTransport:
    """A client of its own loopback address (127.x.y.z): its attempts count apart from every
    other test's."""
    octets = uuid.uuid4().bytes[:3]
    address = f"127.{octets[0]}.{octets[1]}.{max(octets[2], 2)}"
    return httpx.AsyncHTTPTransport(local_address=address)


async def test_guessing_unsubscribe_tokens_fast_is_answered_429_with_retry_after(
    gateway: Gateway,
) -> None:
    limit = GatewaySettings().unsubscribe_attempts_per_minute
    async with httpx.AsyncClient(
        base_url=gateway.url, timeout=15, transport=_from_address()
    ) as guesser:
        for _ in range(limit // 2):  # GET and POST count alike
            shown = await guesser.get("/v1/unsubscribe", params={"token": uuid.uuid4().hex})
            assert shown.status_code == 200, shown.text
            guessed = await guesser.post("/v1/unsubscribe", json={"token": uuid.uuid4().hex})
            assert guessed.status_code == 404, guessed.text
        for attempt in (
            guesser.post("/v1/unsubscribe", json={"token": uuid.uuid4().hex}),
            guesser.get("/v1/unsubscribe", params={"token": uuid.uuid4().hex}),
        ):
            refused = await attempt
            assert refused.status_code == 429, refused.text
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            body = refused.json()
            assert body["error"]["details"][0]["reason"] == "RATE_LIMITED", body
            assert f"more than {limit} attempts a minute" in body["error"]["message"]
    async with httpx.AsyncClient(
        base_url=gateway.url, timeout=15, transport=_from_address()
    ) as someone_else:  # another address is not held back
        shown = await someone_else.get("/v1/unsubscribe", params={"token": uuid.uuid4().hex})
        assert shown.status_code == 200, shown.text
