"""Looking up a redemption by the request_id it was asked with, never redeeming anything."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_kit.caller import Caller
from loyalty_kit.db import driver_connection

from tests.points.conftest import Points, pos, rid
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")
SCOPE = "loyalty.points.v1.PointsService/RedeemPoints:cinema-pos"  # the cinema till's ids


def lookup(member: str, request_id: str) -> pb.LookupRedemptionRequest:
    return pb.LookupRedemptionRequest(member=member, request_id=request_id)


async def test_a_redemption_is_found_by_its_request_id_with_its_first_answer(
    points: Points,
) -> None:
    member = await points.member()
    await points.earn(member, "mall", "100.00")
    cinema = points.as_(pos("cinema"))
    asked = rid()
    spent = await cinema.RedeemPoints(
        pb.RedeemPointsRequest(member=member, request_id=asked, unit="cinema", points=40)
    )
    found = await cinema.LookupRedemption(lookup(member, asked))
    assert found.redeemed and found.redemption == spent
    # An admin looks up any unit's redemption (among its own client's request ids).
    admin = Caller(unit="group", client_id="cinema-pos", scopes=frozenset({"admin"}))
    assert (await points.as_(admin).LookupRedemption(lookup(member, asked))).redeemed
    # Another API client's request ids are its own: it finds nothing under this one.
    assert not (await points.as_(pos("mall")).LookupRedemption(lookup(member, asked))).redeemed
    # Nor is it found under another member.
    other = await points.member()
    assert not (await cinema.LookupRedemption(lookup(other, asked))).redeemed


async def test_a_request_never_taken_is_not_found_and_the_lookup_takes_nothing(
    points: Points,
) -> None:
    member = await points.member()
    await points.earn(member, "mall", "100.00")
    cinema = points.as_(pos("cinema"))
    never = rid()
    assert not (await cinema.LookupRedemption(lookup(member, never))).redeemed
    assert (await points.balance(member)).available == 100
    # A refused redemption took nothing either.
    greedy = rid()
    await fails(
        cinema.RedeemPoints(
            pb.RedeemPointsRequest(member=member, request_id=greedy, unit="cinema", points=500)
        )
    )
    assert not (await cinema.LookupRedemption(lookup(member, greedy))).redeemed
    # The looked-up id is still free: the redemption, asked now, is taken as a first call.
    spent = await cinema.RedeemPoints(
        pb.RedeemPointsRequest(member=member, request_id=never, unit="cinema", points=30)
    )
    assert spent.balance.available == 70
    assert (await cinema.LookupRedemption(lookup(member, never))).redemption == spent


async def test_another_units_redemption_is_refused_and_the_scope_is_needed(
    points: Points,
) -> None:
    member = await points.member()
    await points.earn(member, "mall", "100.00")
    asked = rid()
    await points.as_(pos("cinema")).RedeemPoints(
        pb.RedeemPointsRequest(member=member, request_id=asked, unit="cinema", points=10)
    )
    # The same client acting for another unit: refused as a cancellation would be.
    elsewhere = Caller(unit="mall", client_id="cinema-pos", scopes=frozenset({"redeem"}))
    refused = await fails(points.as_(elsewhere).LookupRedemption(lookup(member, asked)))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    earner = Caller(unit="cinema", client_id="cinema-pos", scopes=frozenset({"earn"}))
    scope = await fails(points.as_(earner).LookupRedemption(lookup(member, asked)))
    assert scope.reason == "SCOPE_REQUIRED"
    bad = await fails(points.as_(pos("cinema")).LookupRedemption(lookup(member, "a b")))
    assert (bad.code, bad.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["request_id"])


async def test_a_redemption_in_flight_is_waited_for(points: Points) -> None:
    """A claim not yet committed is invisible to a plain read: the lookup waits for it."""
    member = await points.member()
    member_id = member.split("/")[1]
    asked = rid()
    sessions = points.service.context.sessions
    assert sessions is not None
    answer = pb.RedeemPointsResponse(posting=pb.Posting(member_id=member_id, unit="cinema"))
    async with sessions() as session, session.begin():
        conn = await driver_connection(session)
        await conn.execute(
            "INSERT INTO kit_idempotency_keys (scope, request_id, fingerprint) "
            "VALUES ($1, $2, 'in-flight')",
            SCOPE,
            asked,
        )
        looking = asyncio.ensure_future(
            points.as_(pos("cinema")).LookupRedemption(lookup(member, asked))
        )
        await asyncio.sleep(0.5)
        assert not looking.done()  # it cannot answer while the claim's transaction is open
        await conn.execute(
            "UPDATE kit_idempotency_keys SET response = $3 WHERE scope = $1 AND request_id = $2",
            SCOPE,
            asked,
            answer.SerializeToString(),
        )
    found = await asyncio.wait_for(looking, 15)
    assert found.redeemed and found.redemption.posting.member_id == member_id
