"""A journey's key, the programme file's name for it: unique, well formed, set on create or on
the update of a journey without one, never changed."""

from __future__ import annotations

import uuid

import grpc
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty_engagement.domain.journeys import key_violations

from tests.engagement.conftest import Engagement, rid
from tests.engagement.test_journeys import points_step
from tests.support.rpc import fails


def _journey(key: str = "", name: str = "keyed") -> pb.Journey:
    return pb.Journey(
        key=key,
        display_name=name,
        trigger=pb.Trigger(kind=pb.TRIGGER_KIND_BIRTHDAY),
        steps=[points_step(5, "mall")],
        state=pb.JOURNEY_STATE_DRAFT,
    )


def test_a_key_is_lowercase_letters_digits_and_dashes() -> None:
    assert key_violations("") == []
    assert key_violations("win-back-2") == []
    assert key_violations("a" * 63) == []
    for bad in ("Win", "-x", "a b", "a_b", "a" * 64, "ü"):
        assert [v.field for v in key_violations(bad)] == ["journey.key"], bad


async def test_a_key_names_one_journey_and_never_changes(engagement: Engagement) -> None:
    client = engagement.as_()
    key = f"k-{uuid.uuid4().hex[:12]}"
    made = (
        await client.CreateJourney(pb.CreateJourneyRequest(journey=_journey(key), request_id=rid()))
    ).journey
    assert made.key == key
    assert (await client.GetJourney(pb.GetJourneyRequest(name=made.name))).journey.key == key

    taken = await fails(
        client.CreateJourney(pb.CreateJourneyRequest(journey=_journey(key), request_id=rid()))
    )
    assert (taken.code, taken.reason) == (grpc.StatusCode.ALREADY_EXISTS, "JOURNEY_KEY_TAKEN")
    bad = await fails(
        client.CreateJourney(pb.CreateJourneyRequest(journey=_journey("Bad Key"), request_id=rid()))
    )
    assert (bad.code, bad.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["journey.key"])

    edited = _journey("", "renamed")
    edited.name = made.name
    kept = (
        await client.UpdateJourney(pb.UpdateJourneyRequest(journey=edited, request_id=rid()))
    ).journey
    assert (kept.key, kept.version, kept.display_name) == (key, 2, "renamed")
    edited.key = f"{key}-other"
    changed = await fails(
        client.UpdateJourney(pb.UpdateJourneyRequest(journey=edited, request_id=rid()))
    )
    assert (changed.code, changed.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["journey.key"])

    # A journey made without one is given one by an update, unless another has it.
    plain = (
        await client.CreateJourney(pb.CreateJourneyRequest(journey=_journey(), request_id=rid()))
    ).journey
    assert plain.key == ""
    later = _journey(key)
    later.name = plain.name
    clash = await fails(
        client.UpdateJourney(pb.UpdateJourneyRequest(journey=later, request_id=rid()))
    )
    assert (clash.code, clash.reason) == (grpc.StatusCode.ALREADY_EXISTS, "JOURNEY_KEY_TAKEN")
    later.key = f"{key}-later"
    given = (
        await client.UpdateJourney(pb.UpdateJourneyRequest(journey=later, request_id=rid()))
    ).journey
    assert (given.key, given.version) == (f"{key}-later", 2)
