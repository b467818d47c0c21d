"""Journeys over a real channel against the running engagement service, entered by real events
(identity's registrations, tiers' changes on the bus) and acting through the benefits, points
and identity services of the run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import member_pb2
from loyalty.insights.v1 import events_pb2 as insights_events
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.tiers.v1 import events_pb2 as tiers_events
from loyalty_kit.caller import Caller
from loyalty_kit.timestamps import timestamp

from tests.engagement.conftest import Engagement, rid, until
from tests.support.events import publish
from tests.support.rpc import fails

SMS = member_pb2.CONSENT_PURPOSE_MARKETING_SMS


def coupon_step(template: str = "test-mall-15", unit: str = "mall") -> pb.Step:
    return pb.Step(issue_coupon=pb.IssueCoupon(template=template, unit=unit))


def points_step(points: int = 100, unit: str = "hotel") -> pb.Step:
    return pb.Step(award_points=pb.AwardPoints(points=points, funding_unit=unit, reason="welcome"))


def tier_changed(member_id: str, to_tier: str, at: datetime) -> tiers_events.TierChanged:
    return tiers_events.TierChanged(
        member_id=member_id,
        from_tier="silver",
        to_tier=to_tier,
        reason="qualified",
        effective_at=timestamp(at),
    )


async def test_a_registration_issues_the_coupon_once_however_often_it_arrives(
    engagement: Engagement,
) -> None:
    journey = await engagement.journey(
        pb.Journey(
            display_name="welcome coupon",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_MEMBER_REGISTERED),
            conditions=pb.Conditions(units=["cinema"]),
            steps=[coupon_step()],
        )
    )
    member_id = await engagement.member("cinema")
    entries = await until(lambda: engagement.entries(journey.name, member_id), lambda e: bool(e))
    assert [e.state for e in entries] == [pb.ENTRY_STATE_COMPLETED], entries
    # The same registration again: redelivered (its event ID) and replayed (a new one).
    again = identity_events.MemberRegistered(
        member_id=member_id, unit="cinema", registered_at=timestamp(datetime.now(UTC))
    )
    event_id = await publish(engagement.settings, "identity", again)
    await publish(engagement.settings, "identity", again, event_id, msg_id=rid())
    await publish(engagement.settings, "identity", again)
    # A later registration's entry shows the replays were handled before it (one consumer).
    later = await engagement.member("cinema")
    await until(lambda: engagement.entries(journey.name, later), lambda e: bool(e))
    coupons = await engagement.coupons(member_id)
    assert [c.template_code for c in coupons] == ["test-mall-15"]
    entries = await engagement.entries(journey.name, member_id)
    assert len(entries) == 1
    assert [(s.step, s.outcome, s.detail) for s in entries[0].steps] == [
        (0, "done", coupons[0].code)
    ]


async def test_a_tier_change_awards_points_funded_by_the_unit(engagement: Engagement) -> None:
    tier = f"t-{uuid.uuid4().hex[:8]}"
    journey = await engagement.journey(
        pb.Journey(
            display_name="upgrade bonus",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=[points_step(250, "hotel")],
        )
    )
    member_id = await engagement.member()
    other = await engagement.member()
    await publish(
        engagement.settings, "tiers", tier_changed(other, "gold-not-this", datetime.now(UTC))
    )
    await publish(engagement.settings, "tiers", tier_changed(member_id, tier, datetime.now(UTC)))
    entries = await until(lambda: engagement.entries(journey.name), lambda e: bool(e))
    assert [e.member_id for e in entries] == [member_id]
    postings = await until(lambda: engagement.postings(member_id), lambda p: bool(p))
    assert [(p.unit, p.points) for p in postings] == [("hotel", 250)]
    assert await engagement.postings(other) == []


async def test_a_message_goes_only_with_the_consent_for_its_purpose(
    engagement: Engagement,
) -> None:
    journey = await engagement.journey(
        pb.Journey(
            display_name="welcome sms",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_MEMBER_REGISTERED),
            conditions=pb.Conditions(units=["hotel"]),
            steps=[pb.Step(send_message=pb.SendMessage(purpose=SMS, body="Welcome to Huayue"))],
        )
    )
    consenting = await engagement.member("hotel", SMS)
    silent = await engagement.member("hotel", member_pb2.CONSENT_PURPOSE_MARKETING_PUSH)
    entries = await until(
        lambda: engagement.entries(journey.name),
        lambda found: {consenting, silent} <= {e.member_id for e in found},
    )
    outcomes = {e.member_id: [s.outcome for s in e.steps] for e in entries}
    assert outcomes[consenting] == ["done"]
    assert outcomes[silent] == ["no_consent"]
    sent = await engagement.messages(consenting)
    assert [(m.body, m.purpose, m.journey) for m in sent] == [
        ("Welcome to Huayue", SMS, journey.name)
    ]
    assert len(sent[0].unsubscribe_token) >= 20
    assert await engagement.messages(silent) == []


async def test_a_paused_journey_keeps_its_entries_and_runs_them_on_resume(
    engagement: Engagement,
) -> None:
    tier = f"t-{uuid.uuid4().hex[:8]}"
    journey = await engagement.journey(
        pb.Journey(
            display_name="paused bonus",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=[points_step(40, "mall")],
        )
    )
    await engagement.as_().PauseJourney(pb.PauseJourneyRequest(name=journey.name, request_id=rid()))
    member_id = await engagement.member()
    await publish(engagement.settings, "tiers", tier_changed(member_id, tier, datetime.now(UTC)))
    entries = await until(lambda: engagement.entries(journey.name), lambda e: bool(e))
    assert [e.state for e in entries] == [pb.ENTRY_STATE_PENDING]
    assert await engagement.postings(member_id) == []
    resumed = await engagement.as_().ResumeJourney(
        pb.ResumeJourneyRequest(name=journey.name, request_id=rid())
    )
    assert resumed.pending_run == 1
    assert resumed.journey.state == pb.JOURNEY_STATE_ACTIVE
    entries = await engagement.entries(journey.name)
    assert [e.state for e in entries] == [pb.ENTRY_STATE_COMPLETED]
    assert [(p.unit, p.points) for p in await engagement.postings(member_id)] == [("mall", 40)]


async def test_an_edit_is_a_new_version_and_entries_keep_theirs(engagement: Engagement) -> None:
    tier = f"t-{uuid.uuid4().hex[:8]}"
    journey = await engagement.journey(
        pb.Journey(
            display_name="versioned",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=[points_step(10, "mall")],
        )
    )
    first = await engagement.member()
    await publish(engagement.settings, "tiers", tier_changed(first, tier, datetime.now(UTC)))
    await until(lambda: engagement.entries(journey.name), lambda e: bool(e))
    changed = pb.Journey()
    changed.CopyFrom(journey)
    del changed.steps[:]
    changed.steps.append(points_step(20, "mall"))
    updated = (
        await engagement.as_().UpdateJourney(
            pb.UpdateJourneyRequest(journey=changed, request_id=rid())
        )
    ).journey
    assert updated.version == 2
    second = await engagement.member()
    await publish(engagement.settings, "tiers", tier_changed(second, tier, datetime.now(UTC)))
    entries = await until(lambda: engagement.entries(journey.name), lambda e: len(e) == 2)
    assert {e.member_id: e.version for e in entries} == {first: 1, second: 2}
    points = await until(lambda: engagement.postings(second), lambda p: bool(p))
    assert [p.points for p in points] == [20]
    assert [p.points for p in await engagement.postings(first)] == [10]


async def test_a_bad_journey_is_refused_naming_each_field(engagement: Engagement) -> None:
    bad = pb.Journey(display_name="bad", control_share=1.5)
    failure = await fails(
        engagement.as_().CreateJourney(pb.CreateJourneyRequest(journey=bad, request_id=rid()))
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "journey.trigger.kind" in failure.fields
    no_steps = pb.Journey(
        display_name="no steps",
        trigger=pb.Trigger(kind=pb.TRIGGER_KIND_PURCHASE),
        control_share=-0.1,
    )
    failure = await fails(
        engagement.as_().CreateJourney(pb.CreateJourneyRequest(journey=no_steps, request_id=rid()))
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {"journey.steps", "journey.control_share"} <= set(failure.fields), failure.fields
    unit_journey = pb.Journey(
        display_name="mall funds hotel",
        unit="mall",
        trigger=pb.Trigger(kind=pb.TRIGGER_KIND_PURCHASE),
        steps=[points_step(10, "hotel")],
    )
    mall_team = Caller(unit="mall", client_id="mall-crm", scopes=frozenset({"engagement:write"}))
    failure = await fails(
        engagement.as_(mall_team).CreateJourney(
            pb.CreateJourneyRequest(journey=unit_journey, request_id=rid())
        )
    )
    assert failure.fields == ["journey.steps[0].award_points.funding_unit"]


async def test_held_out_and_capped_entries_are_recorded_and_take_no_action(
    engagement: Engagement,
) -> None:
    tier = f"t-{uuid.uuid4().hex[:8]}"
    held = await engagement.journey(
        pb.Journey(
            display_name="all held out",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=[points_step(7, "mall")],
            control_share=1.0,
        )
    )
    capped = await engagement.journey(
        pb.Journey(
            display_name="once a month",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=[points_step(3, "mall")],
            frequency_cap=pb.FrequencyCap(max_entries=1, period_days=30),
        )
    )
    member_id = await engagement.member()
    now = datetime.now(UTC)
    await publish(engagement.settings, "tiers", tier_changed(member_id, tier, now))
    await publish(
        engagement.settings, "tiers", tier_changed(member_id, tier, now + timedelta(seconds=1))
    )
    entries = await until(lambda: engagement.entries(capped.name), lambda e: len(e) == 2)
    assert sorted(e.state for e in entries) == [pb.ENTRY_STATE_COMPLETED, pb.ENTRY_STATE_CAPPED]
    held_entries = await until(lambda: engagement.entries(held.name), lambda e: len(e) == 2)
    assert {e.state for e in held_entries} == {pb.ENTRY_STATE_HELD_OUT}
    assert all(not e.steps for e in held_entries)
    assert [p.points for p in await engagement.postings(member_id)] == [3]


async def test_a_segment_entry_tags_the_member_and_a_purchase_counts_at_its_unit_only(
    engagement: Engagement,
) -> None:
    segment = f"segments/{uuid.uuid4()}"
    tag = f"journey:{uuid.uuid4().hex[:8]}"
    tagging = await engagement.journey(
        pb.Journey(
            display_name="tag on entry",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_SEGMENT_ENTERED, segment=segment),
            steps=[pb.Step(change_tags=pb.ChangeTags(add_tags=[tag]))],
        )
    )
    shop = f"order-{uuid.uuid4().hex[:8]}"
    buying = await engagement.journey(
        pb.Journey(
            display_name="cinema purchase",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_PURCHASE, unit="cinema"),
            conditions=pb.Conditions(units=["cinema"]),
            steps=[points_step(9, "cinema")],
        )
    )
    member_id = await engagement.member()
    now = timestamp(datetime.now(UTC))
    entered = insights_events.SegmentEntered(
        segment=segment, member_id=member_id, occurred_at=now, reason="figures"
    )
    await publish(engagement.settings, "insights", entered)
    for unit in ("mall", "cinema"):
        earned = points_events.PointsEarned(
            member_id=member_id,
            posting_id=f"{shop}-{unit}",
            unit=unit,
            order_id=shop,
            points=10,
            occurred_at=now,
        )
        await publish(engagement.settings, "points", earned)
    tags = await until(lambda: engagement.tags(member_id), lambda found: tag in found)
    assert tag in tags
    (entry,) = await until(lambda: engagement.entries(tagging.name), lambda e: bool(e))
    assert entry.member_id == member_id
    entries = await until(lambda: engagement.entries(buying.name, member_id), lambda e: bool(e))
    assert [e.trigger_key for e in entries] == [f"purchase:{shop}-cinema"]
    postings = await until(lambda: engagement.postings(member_id), lambda p: bool(p))
    assert [(p.unit, p.points) for p in postings] == [("cinema", 9)]


async def test_an_erased_members_messages_are_deleted(engagement: Engagement) -> None:
    journey = await engagement.journey(
        pb.Journey(
            display_name="erasure",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_MEMBER_REGISTERED),
            conditions=pb.Conditions(units=["hotel"]),
            steps=[pb.Step(send_message=pb.SendMessage(purpose=SMS, body="Hello"))],
        )
    )
    member_id = await engagement.member("hotel", SMS)
    assert await until(lambda: engagement.messages(member_id), lambda m: bool(m))
    erased = identity_events.MemberErased(
        member_id=member_id, erased_at=timestamp(datetime.now(UTC))
    )
    await publish(engagement.settings, "identity", erased)
    assert await until(lambda: engagement.messages(member_id), lambda m: not m) == []
    assert [e.member_id for e in await engagement.entries(journey.name, member_id)] == [member_id]
