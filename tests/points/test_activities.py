"""Behaviour points over a real channel: RecordActivity under Huayue's rules (check-in 10 once a
day at a unit, review 50 five a month, survey 100 once per survey, profile 200 once from the
group's budget, the cinema's own "trailer watched" 5, three a day), idempotency by the unit's
activity ID under concurrency, limits exact under concurrency, bad input, and who may call."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_kit.caller import Caller
from loyalty_kit.resources import member_id_of

from tests.points.conftest import ADMIN, Points, pos
from tests.points.test_unmerge import merge
from tests.support.events import published
from tests.support.metrics import moved, scrape, scraped_until
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


def activity(
    member: str,
    activity_type: str,
    unit: str = "mall",
    activity_id: str | None = None,
    **attributes: str,
) -> pb.RecordActivityRequest:
    return pb.RecordActivityRequest(
        member=member,
        unit=unit,
        activity_type=activity_type,
        activity_id=activity_id or f"act-{uuid.uuid4().hex}",
        attributes=attributes,
    )


async def record(points: Points, request: pb.RecordActivityRequest) -> pb.Activity:
    response = await points.as_(pos(request.unit)).RecordActivity(request)
    found: pb.Activity = response.activity
    return found


async def test_a_check_in_awards_10_points_once_a_day_at_a_unit(points: Points) -> None:
    member = await points.member()
    first = await record(points, activity(member, "check_in"))
    again = await record(points, activity(member, "check_in"))
    at_hotel = await record(points, activity(member, "check_in", unit="hotel"))

    assert (first.points, first.funding_unit, first.limit_reason) == (10, "mall", "")
    assert first.name == f"{member}/activities/mall:{first.activity_id}"
    assert (again.points, again.limit_reason, again.limit) == (
        0,
        "LIMIT_REACHED",
        "1 per day at the unit",
    )
    assert again.posting_id == ""
    assert at_hotel.points == 10  # once a day at each unit
    assert (await points.balance(member)).available == 20
    statement = await points.as_().ListPostings(
        pb.ListPostingsRequest(member=member, kind=pb.POSTING_KIND_ACTIVITY)
    )
    assert sorted(p.posting_id for p in statement.postings) == sorted(
        [first.posting_id, at_hotel.posting_id]
    )
    assert {p.unit for p in statement.postings} == {"mall", "hotel"}


async def test_the_funding_unit_bears_the_points_in_the_settlement(points: Points) -> None:
    member = await points.member()
    start = Timestamp()
    start.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
    before = await points.as_(ADMIN).GetSettlement(
        pb.GetSettlementRequest(start_time=start, end_time=_in(timedelta(hours=1)))
    )
    profile = await record(points, activity(member, "profile_completed", unit="cinema"))
    assert (profile.points, profile.funding_unit) == (200, "group")
    after = await points.as_(ADMIN).GetSettlement(
        pb.GetSettlementRequest(start_time=start, end_time=_in(timedelta(hours=1)))
    )
    issued = {u.unit: u.points_issued for u in after.units}
    earlier = {u.unit: u.points_issued for u in before.units}
    assert issued.get("group", 0) - earlier.get("group", 0) >= 200
    again = await record(points, activity(member, "profile_completed", unit="mall"))
    assert (again.points, again.limit) == (0, "1 per ever")


def _in(delta: timedelta) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + delta)
    return stamp


async def test_a_survey_awards_once_per_survey(points: Points) -> None:
    member = await points.member()
    survey = f"s-{uuid.uuid4().hex[:8]}"
    first = await record(points, activity(member, "survey_answered", survey_id=survey))
    second = await record(points, activity(member, "survey_answered", survey_id=survey))
    other = await record(points, activity(member, "survey_answered", survey_id=survey + "b"))
    assert [first.points, second.points, other.points] == [100, 0, 100]
    assert first.attributes == {"survey_id": survey}


async def test_the_same_activity_id_answers_as_the_first_time(points: Points) -> None:
    member = await points.member()
    request = activity(member, "review")
    first = await record(points, request)
    retry = await record(points, request)
    assert retry == first
    assert (await points.balance(member)).available == 50

    changed = pb.RecordActivityRequest()
    changed.CopyFrom(request)
    changed.activity_type = "check_in"
    refused = await fails(points.as_(pos("mall")).RecordActivity(changed))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "ACTIVITY_ID_REUSED",
    )
    assert refused.metadata["activity_id"] == request.activity_id


async def test_two_concurrent_calls_with_one_key_award_once(points: Points) -> None:
    member = await points.member()
    request = activity(member, "review")
    answers = await asyncio.gather(*(record(points, request) for _ in range(8)))
    assert {a.posting_id for a in answers} == {answers[0].posting_id}
    assert all(a.points == 50 for a in answers)
    assert (await points.balance(member)).available == 50


async def test_concurrent_activities_over_a_daily_limit_award_exactly_the_limit(
    points: Points,
) -> None:
    member = await points.member()
    answers = await asyncio.gather(
        *(
            record(points, activity(member, "cinema:trailer_watched", unit="cinema"))
            for _ in range(12)
        )
    )
    assert sorted(a.points for a in answers) == [0] * 9 + [5] * 3
    assert {a.limit for a in answers if not a.points} == {"3 per day"}
    assert (await points.balance(member)).available == 15


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"activity_type": "jogging"}, "activity_type"),
        ({"activity_type": ""}, "activity_type"),
        ({"activity_type": "cinema:trailer_watched"}, "activity_type"),  # the mall records it
        ({"activity_id": ""}, "activity_id"),
        ({"occur_time": "future"}, "occur_time"),
        ({"activity_type": "survey_answered"}, "attributes[survey_id]"),
    ],
)
async def test_bad_input_is_refused_with_its_field(
    points: Points, change: dict[str, str], field: str
) -> None:
    member = await points.member()
    request = activity(member, "check_in")
    for name, value in change.items():
        if value == "future":
            request.occur_time.CopyFrom(_in(timedelta(hours=1)))
        else:
            setattr(request, name, value)
    refused = await fails(points.as_(pos("mall")).RecordActivity(request))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in refused.fields
    assert (await points.balance(member)).available == 0


async def test_a_unit_records_only_for_itself(points: Points) -> None:
    member = await points.member()
    refused = await fails(
        points.as_(pos("mall")).RecordActivity(activity(member, "check_in", unit="hotel"))
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    reader = Caller(unit="mall", client_id="mall-reports", scopes=frozenset({"reports"}))
    no_scope = await fails(points.as_(reader).RecordActivity(activity(member, "check_in")))
    assert no_scope.reason == "SCOPE_REQUIRED"


async def test_every_activity_goes_out_on_the_bus_and_awards_are_counted(points: Points) -> None:
    member = await points.member()
    before = await scrape(points.service)
    awarded = await record(points, activity(member, "check_in", unit="cinema", gate="2"))
    limited = await record(points, activity(member, "check_in", unit="cinema"))

    member_id = member_id_of(member, "member")
    found = await published(
        points.service.context.settings,
        "points",
        points_events.ActivityRecorded,
        [member_id],
        at_least=2,
    )
    announced = {e.activity_id: e for e in found[member_id]}
    first = announced[awarded.activity_id]
    assert (first.unit, first.activity_type, first.points, first.funding_unit) == (
        "cinema",
        "check_in",
        10,
        "cinema",
    )
    assert (first.posting_id, dict(first.attributes)) == (awarded.posting_id, {"gate": "2"})
    assert announced[limited.activity_id].limit_reason == "LIMIT_REACHED"
    assert announced[limited.activity_id].points == 0
    after = await scraped_until(
        points.service,
        lambda s: moved(before, s, "loyalty_points_total", movement="activity") >= 10,
    )
    assert moved(before, after, "loyalty_points_total", movement="activity", unit="cinema") >= 10


async def test_a_merged_members_awards_count_towards_the_survivors_limits(points: Points) -> None:
    survivor, absorbed = await points.member(), await points.member()
    assert (await record(points, activity(absorbed, "profile_completed"))).points == 200
    await merge(points, survivor, absorbed)
    again = await record(points, activity(survivor, "profile_completed"))
    assert (again.points, again.limit_reason) == (0, "LIMIT_REACHED")
    refused = await fails(points.as_(pos("mall")).RecordActivity(activity(absorbed, "review")))
    assert refused.reason == "MEMBER_MERGED"
