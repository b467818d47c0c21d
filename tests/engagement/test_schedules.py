"""Journeys on a schedule over a segment, badge conditions and quiet hours in the member's own
time zone, over a real channel with real events: a segment's members (from insights' moves) enter
once per occurrence however many timers sweep at once; a badge condition enters only holders;
a member's zone from identity's profile defers a message to the end of quiet hours there. The
timer's use cases run on the running service at a moment the test chooses (as test_timing)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
from google.protobuf import field_mask_pb2
from loyalty.engagement.v1 import challenges_pb2
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.insights.v1 import events_pb2 as insights_events
from loyalty_engagement.adapters.tables import member_activity, segment_members
from loyalty_engagement.bootstrap import Engagement as Root
from loyalty_engagement.service_layer import timer
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp
from sqlalchemy import select

from tests.engagement.conftest import Engagement, rid, until
from tests.engagement.test_challenges import DESK, challenges
from tests.engagement.test_journeys import tier_changed
from tests.points.conftest import ADMIN
from tests.support.clients import As
from tests.support.events import publish
from tests.support.rpc import fails

SMS = member_pb2.CONSENT_PURPOSE_MARKETING_SMS


def _at(offset: timedelta) -> datetime:
    return datetime.now(UTC) + offset


async def _move(engagement: Engagement, segment: str, member_id: str, entered: bool) -> None:
    at = timestamp(datetime.now(UTC))
    event = (
        insights_events.SegmentEntered(segment=segment, member_id=member_id, occurred_at=at)
        if entered
        else insights_events.SegmentLeft(segment=segment, member_id=member_id, occurred_at=at)
    )
    await publish(engagement.settings, "insights", event)


async def test_a_weekly_schedule_enters_the_segments_members_once_per_occurrence(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    segment = f"segments/{uuid.uuid4().hex[:10]}"
    tag = f"journey:weekly-{uuid.uuid4().hex[:6]}"
    # Two hours from now, on that day of the week, in UTC: the service's own timer (on the real
    # clock) finds no occurrence before the test's sweeps do.
    occurrence = (_at(timedelta(hours=2))).replace(second=0, microsecond=0)
    journey = await engagement.journey(
        pb.Journey(
            display_name="weekly to the segment",
            trigger=pb.Trigger(
                kind=pb.TRIGGER_KIND_SCHEDULE,
                segment=segment,
                schedule=pb.Schedule(
                    time_of_day=occurrence.strftime("%H:%M"),
                    days_of_week=[occurrence.isoweekday()],  # type: ignore[list-item]
                ),
            ),
            steps=[pb.Step(change_tags=pb.ChangeTags(add_tags=[tag]))],
            time_zone="UTC",
        )
    )
    assert journey.trigger.schedule.time_of_day == occurrence.strftime("%H:%M")
    stays, also, leaves, never = [await engagement.member() for _ in range(4)]
    for member_id in (stays, also, leaves):
        await _move(engagement, segment, member_id, entered=True)
    await _move(engagement, segment, leaves, entered=False)
    await until(lambda: _members_in(root, segment), lambda found: found == {stays, also})

    await timer.sweep(root.uow, lambda: _at(timedelta(hours=1)))  # before the occurrence
    assert await engagement.entries(journey.name) == []

    # Three replicas' timers sweep at once just after it, then again later: once each.
    after = _at(timedelta(hours=2, minutes=1))
    await asyncio.gather(*(timer.sweep(root.uow, lambda: after) for _ in range(3)))
    await timer.sweep(root.uow, lambda: after + timedelta(hours=3))
    await timer.run_due(root.uow, root.actions, lambda: after + timedelta(hours=3))
    entries = await engagement.entries(journey.name)
    assert sorted(e.member_id for e in entries) == sorted([stays, also])
    assert {e.state for e in entries} == {pb.ENTRY_STATE_COMPLETED}
    assert {e.trigger_key for e in entries} == {f"schedule:{occurrence.isoformat()}"}
    assert tag in await engagement.tags(stays)
    assert tag not in await engagement.tags(leaves) and tag not in await engagement.tags(never)

    # A week later: the next occurrence enters them again, once.
    next_week = after + timedelta(days=7)
    await asyncio.gather(
        timer.sweep(root.uow, lambda: next_week), timer.sweep(root.uow, lambda: next_week)
    )
    entries = await engagement.entries(journey.name)
    assert len(entries) == 4
    assert sorted(e.member_id for e in entries) == sorted([stays, also] * 2)


async def _members_in(root: Root, segment: str) -> set[str]:
    async with root.uow(read_only=True) as uow:
        rows = await uow.session.execute(
            select(segment_members.c.member_id).where(
                segment_members.c.segment == segment, segment_members.c.present
            )
        )
        return {r.member_id for r in rows}


async def test_a_bad_schedule_is_refused_by_field(engagement: Engagement) -> None:
    bad = pb.Journey(
        display_name="bad schedule",
        trigger=pb.Trigger(
            kind=pb.TRIGGER_KIND_SCHEDULE,
            segment="champions",
            schedule=pb.Schedule(time_of_day="25:61"),
        ),
        conditions=pb.Conditions(held_badges=[" "]),
        steps=[pb.Step(change_tags=pb.ChangeTags(add_tags=["journey:x"]))],
    )
    failure = await fails(
        engagement.as_().CreateJourney(pb.CreateJourneyRequest(journey=bad, request_id=rid()))
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == ["journey.trigger.schedule.time_of_day"]
    bad.trigger.schedule.time_of_day = "10:00"
    bad.trigger.schedule.once_time.CopyFrom(timestamp(_at(timedelta(days=1))))
    failure = await fails(
        engagement.as_().CreateJourney(pb.CreateJourneyRequest(journey=bad, request_id=rid()))
    )
    assert set(failure.fields) == {
        "journey.trigger.segment",
        "journey.trigger.schedule.once_time",
        "journey.conditions.held_badges[0]",
    }
    bad.trigger.ClearField("schedule")
    failure = await fails(
        engagement.as_().CreateJourney(pb.CreateJourneyRequest(journey=bad, request_id=rid()))
    )
    assert "journey.trigger.schedule" in failure.fields


async def test_a_badge_condition_enters_only_the_badges_holders(engagement: Engagement) -> None:
    tier = f"t-{uuid.uuid4().hex[:8]}"
    holders = await engagement.journey(
        pb.Journey(
            display_name="for explorers",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            conditions=pb.Conditions(held_badges=["explorer"]),
            steps=[pb.Step(change_tags=pb.ChangeTags(add_tags=["journey:explorer-perk"]))],
        )
    )
    assert list(holders.conditions.held_badges) == ["explorer"]
    others = await engagement.journey(
        pb.Journey(
            display_name="become an explorer",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            conditions=pb.Conditions(lacking_badges=["explorer"]),
            steps=[pb.Step(change_tags=pb.ChangeTags(add_tags=["journey:explore-invite"]))],
        )
    )
    explorer, newcomer = await engagement.member(), await engagement.member()
    await challenges(engagement, DESK).GrantBadge(
        challenges_pb2.GrantBadgeRequest(
            member=f"members/{explorer}", badge="explorer", reason="test", request_id=rid()
        )
    )
    now = datetime.now(UTC)
    for member_id in (explorer, newcomer):
        await publish(engagement.settings, "tiers", tier_changed(member_id, tier, now))

    def states(entries: list[pb.JourneyEntry]) -> dict[str, int]:
        return {e.member_id: e.state for e in entries}

    done = {pb.ENTRY_STATE_COMPLETED, pb.ENTRY_STATE_SKIPPED}
    found = await until(
        lambda: engagement.entries(holders.name),
        lambda e: len(e) == 2 and set(states(e).values()) <= done,
    )
    assert states(found) == {
        explorer: pb.ENTRY_STATE_COMPLETED,
        newcomer: pb.ENTRY_STATE_SKIPPED,
    }
    found = await until(
        lambda: engagement.entries(others.name),
        lambda e: len(e) == 2 and set(states(e).values()) <= done,
    )
    assert states(found) == {
        explorer: pb.ENTRY_STATE_SKIPPED,
        newcomer: pb.ENTRY_STATE_COMPLETED,
    }
    assert "journey:explorer-perk" in await engagement.tags(explorer)
    assert "journey:explorer-perk" not in await engagement.tags(newcomer)


async def _zone_of(root: Root, member_id: str) -> str:
    async with root.uow(read_only=True) as uow:
        found = (
            await uow.session.execute(
                select(member_activity.c.time_zone).where(member_activity.c.member_id == member_id)
            )
        ).scalar()
        return str(found or "")


async def test_quiet_hours_follow_the_members_own_time_zone(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    zone = "Asia/Kolkata"  # UTC+05:30, no daylight saving
    local_now = datetime.now(UTC).astimezone(ZoneInfo(zone))
    start, end = local_now - timedelta(hours=1), local_now + timedelta(hours=1)
    tier = f"t-{uuid.uuid4().hex[:8]}"
    # Quiet now in Kolkata, not in the journey's zone (UTC, five and a half hours behind).
    journey = await engagement.journey(
        pb.Journey(
            display_name="quiet where the member is",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=[pb.Step(send_message=pb.SendMessage(purpose=SMS, body="Evening offer"))],
            time_zone="UTC",
            quiet_hours=pb.TimeWindow(start=start.strftime("%H:%M"), end=end.strftime("%H:%M")),
        )
    )
    identity = As(identity_service_pb2_grpc.IdentityServiceStub, engagement.identity_channel, ADMIN)
    away, home = await engagement.member("mall", SMS), await engagement.member("mall", SMS)
    refused = await fails(
        identity.UpdateProfile(
            identity_pb.UpdateProfileRequest(
                member=f"members/{away}",
                request_id=rid(),
                profile=member_pb2.Profile(time_zone="Mars/Olympus_Mons"),
                update_mask=field_mask_pb2.FieldMask(paths=["time_zone"]),
            )
        )
    )
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.fields == ["profile.time_zone"]
    updated = await identity.UpdateProfile(
        identity_pb.UpdateProfileRequest(
            member=f"members/{away}",
            request_id=rid(),
            profile=member_pb2.Profile(time_zone=zone),
            update_mask=field_mask_pb2.FieldMask(paths=["time_zone"]),
        )
    )
    assert updated.member.profile.time_zone == zone
    assert await until(lambda: _zone_of(root, away), lambda found: found == zone) == zone

    now = datetime.now(UTC)
    for member_id in (away, home):
        await publish(engagement.settings, "tiers", tier_changed(member_id, tier, now))
    # The member without a zone: the journey's (UTC), not quiet: sent at once.
    sent = await until(lambda: engagement.messages(home), bool)
    assert [m.body for m in sent] == ["Evening offer"]
    [entry] = await until(lambda: engagement.entries(journey.name, away), bool)
    assert entry.state == pb.ENTRY_STATE_WAITING
    due = entry.due_time.ToDatetime(UTC)
    assert due.astimezone(ZoneInfo(zone)).strftime("%H:%M") == end.strftime("%H:%M")
    assert await engagement.messages(away) == []
    await timer.run_due(root.uow, root.actions, lambda: due + timedelta(minutes=1))
    assert [m.body for m in await engagement.messages(away)] == ["Evening offer"]
