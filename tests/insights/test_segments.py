"""Dynamic segments over a real gRPC channel: members' figures written as the refresh writes
them (each test its own members, marked by a tag only they carry), segments created, read,
changed and deleted; their members and counts as the rule says; SegmentEntered / SegmentLeft
on the bus; a targeting segment leaves out members without the offers consent; members whose
figures change enter and leave within seconds; bad rules named by their paths; who may see
and change what."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

import grpc
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from loyalty.insights.v1 import events_pb2
from loyalty.insights.v1 import segments_pb2 as pb
from loyalty_insights.service_layer.segments import evaluate_all
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings
from sqlalchemy import text

from tests.support.clock import Clock
from tests.support.events import published
from tests.support.rpc import fails
from tests.support.segments import (
    Figures,
    Segments,
    all_of,
    condition,
    negated,
    unit_marketing,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

T = TypeVar("T")


@pytest_asyncio.fixture(loop_scope="session")
async def segments(insights_service: RunningService) -> AsyncIterator[Segments]:
    async with grpc.aio.insecure_channel(insights_service.target) as channel:
        yield Segments(channel)


@pytest.fixture
def figures(insights_service: RunningService, clock: Clock) -> Figures:
    return Figures(insights_service, clock)


async def until(
    ask: Callable[[], Awaitable[T]], holds: Callable[[T], bool], seconds: float = 10
) -> T:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await ask()
        if holds(found) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def events_of(
    settings: Settings, kind: type[Any], segment: str, members: list[str]
) -> dict[str, list[str]]:
    """member -> the reasons of its `kind` events about `segment`."""
    found = await published(settings, "insights", kind, members)
    return {m: [e.reason for e in found[m] if e.segment == segment] for m in members}


async def test_a_new_segment_holds_the_members_its_rule_selects(
    segments: Segments, figures: Figures, settings: Settings, clock: Clock
) -> None:
    now = clock()
    gold_hotel = await figures.put(
        tier="gold", units_12m=["hotel"], last_active_at=now - timedelta(days=10)
    )
    platinum_both = await figures.put(
        tier="platinum", units_12m=["hotel", "mall"], last_active_at=now - timedelta(days=40)
    )
    gold_mall = await figures.put(tier="gold", units_12m=["mall"], last_active_at=now)
    silver_hotel = await figures.put(tier="silver", units_12m=["hotel"], last_active_at=now)
    gold_hotel_asleep = await figures.put(
        tier="gold", units_12m=["hotel"], last_active_at=now - timedelta(days=200)
    )
    # gold and above, active at the hotel in 12 months and in the last 90 days
    rule = figures.mine(
        condition("TIER", "IN", values=["gold", "platinum", "diamond"]),
        condition("UNITS_12M", "CONTAINS_ANY", values=["hotel"]),
        condition("LAST_ACTIVE", "WITHIN_DAYS", "90"),
    )
    segment = await segments.create(rule)
    assert segment.name.startswith("segments/")
    assert segment.member_count == 2
    assert segment.state == pb.SEGMENT_STATE_ACTIVE
    assert segment.unit == "group"
    assert segment.etag
    assert segment.rule == rule
    assert await segments.members(segment.name, page_size=1) == sorted([gold_hotel, platinum_both])
    got = await segments.api().GetSegment(pb.GetSegmentRequest(name=segment.name))
    assert got.segment == segment

    entered = await events_of(
        settings, events_pb2.SegmentEntered, segment.name, [gold_hotel, platinum_both]
    )
    assert entered == {gold_hotel: ["created"], platinum_both: ["created"]}
    others = await published(
        settings,
        "insights",
        events_pb2.SegmentEntered,
        [gold_mall, silver_hotel, gold_hotel_asleep],
        at_least=0,
    )
    assert not [e for found in others.values() for e in found if e.segment == segment.name]

    # the same rule, validated only: counted, nothing stored
    checked = await segments.api().CreateSegment(
        pb.CreateSegmentRequest(
            segment=pb.Segment(display_name="a check", rule=rule), validate_only=True
        )
    )
    assert checked.segment.member_count == 2
    assert checked.segment.name == ""


async def test_changing_the_rule_moves_members_in_and_out_with_events(
    segments: Segments, figures: Figures, settings: Settings
) -> None:
    big = await figures.put(spend_12m=Decimal("25000.00"))
    middle = await figures.put(spend_12m=Decimal("8000.00"))
    small = await figures.put(spend_12m=Decimal("100.00"))
    segment = await segments.create(figures.mine(condition("SPEND_12M", "AT_LEAST", "20000")))
    assert await segments.members(segment.name) == [big]

    new_rule = figures.mine(
        condition("SPEND_12M", "AT_LEAST", "5000"),
        condition("SPEND_12M", "LESS_THAN", "20000"),
    )
    request = pb.UpdateSegmentRequest(
        segment=pb.Segment(name=segment.name, rule=new_rule, etag=segment.etag),
        update_mask=FieldMask(paths=["rule"]),
        request_id=uuid.uuid4().hex,
    )
    updated = (await segments.api().UpdateSegment(request)).segment
    assert updated.member_count == 1
    assert updated.etag != segment.etag
    assert updated.display_name == "test segment"  # not in the mask
    assert await segments.members(segment.name) == [middle]
    again = await segments.api().UpdateSegment(request)  # a retry: the first answer
    assert again.segment == updated

    left = await events_of(settings, events_pb2.SegmentLeft, segment.name, [big])
    assert left == {big: ["updated"]}
    entered = await events_of(settings, events_pb2.SegmentEntered, segment.name, [middle])
    assert entered == {middle: ["updated"]}

    stale = await fails(
        segments.api().UpdateSegment(
            pb.UpdateSegmentRequest(
                segment=pb.Segment(name=segment.name, display_name="x", etag=segment.etag),
                update_mask=FieldMask(paths=["display_name"]),
                request_id=uuid.uuid4().hex,
            )
        )
    )
    assert (stale.code, stale.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")

    await segments.api().DeleteSegment(
        pb.DeleteSegmentRequest(name=segment.name, request_id=uuid.uuid4().hex)
    )
    gone = await fails(segments.api().GetSegment(pb.GetSegmentRequest(name=segment.name)))
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "SEGMENT_NOT_FOUND")
    assert small  # never a member


async def test_figures_that_change_move_members_within_seconds(
    segments: Segments, figures: Figures, settings: Settings
) -> None:
    rfm_rule = figures.mine(condition("RFM_SEGMENT", "IN", values=["at_risk", "cant_lose"]))
    at_risk = await figures.put(rfm_segment="at_risk")
    segment = await segments.create(rfm_rule)
    assert await segments.members(segment.name) == [at_risk]

    champion = await figures.put(rfm_segment="champions")
    await figures.change(champion, rfm_segment="cant_lose")
    await figures.change(at_risk, rfm_segment="champions")
    newcomer = await figures.put(rfm_segment="at_risk")

    started = asyncio.get_running_loop().time()
    found = await until(
        lambda: segments.members(segment.name), lambda m: m == sorted([champion, newcomer])
    )
    assert found == sorted([champion, newcomer])
    assert asyncio.get_running_loop().time() - started < 5
    entered = await events_of(
        settings, events_pb2.SegmentEntered, segment.name, [champion, newcomer]
    )
    assert entered == {champion: ["figures"], newcomer: ["figures"]}
    left = await events_of(settings, events_pb2.SegmentLeft, segment.name, [at_risk])
    assert left == {at_risk: ["figures"]}
    counted = await segments.api().GetSegment(pb.GetSegmentRequest(name=segment.name))
    assert counted.segment.member_count == 2


async def test_targeting_leaves_out_withdrawn_consent_and_erased_and_absorbed_members_leave(
    segments: Segments, figures: Figures, settings: Settings, insights_service: RunningService
) -> None:
    consenting = await figures.put(tier="gold")
    withdrawn = await figures.put(tier="gold", offers_consent=False)
    rule = figures.mine(condition("TIER", "EQUALS", "gold"))
    targeting = await segments.create(rule, targeting=True)
    counting = await segments.create(rule)  # not for offers: everyone
    assert await segments.members(targeting.name) == [consenting]
    assert sorted(await segments.members(counting.name)) == sorted([consenting, withdrawn])

    await figures.change(consenting, offers_consent=False)
    found = await until(lambda: segments.members(targeting.name), lambda m: m == [])
    assert found == []
    left = await events_of(settings, events_pb2.SegmentLeft, targeting.name, [consenting])
    assert left == {consenting: ["figures"]}
    assert len(await segments.members(counting.name)) == 2

    # an erased member (its figures gone) leaves every segment
    async with insights_service.context.database() as session:
        await session.execute(
            text("INSERT INTO erased_members (member_id, erased_at) VALUES (:m, now())"),
            {"m": withdrawn},
        )
        await session.execute(
            text("DELETE FROM member_figures WHERE member_id = :m"), {"m": withdrawn}
        )
        await session.commit()
    found = await until(lambda: segments.members(counting.name), lambda m: m == [consenting])
    assert found == [consenting]

    # a member absorbed by a merge (its figures count for the survivor now) leaves too
    async with insights_service.context.database() as session:
        await session.execute(
            text(
                "INSERT INTO member_merges (absorbed_id, survivor_id, merged_at) "
                "VALUES (:m, :s, now())"
            ),
            {"m": consenting, "s": str(uuid.uuid4())},
        )
        await session.execute(
            text("DELETE FROM member_figures WHERE member_id = :m"), {"m": consenting}
        )
        await session.commit()
    found = await until(lambda: segments.members(counting.name), lambda m: m == [])
    assert found == []
    left = await events_of(settings, events_pb2.SegmentLeft, counting.name, [consenting, withdrawn])
    assert left == {consenting: ["figures"], withdrawn: ["figures"]}


async def test_bad_rules_are_refused_naming_the_field(segments: Segments) -> None:
    rule = all_of(
        condition("TIER", "IN", values=["gold"]),
        condition("SPEND_12M", "AT_LEAST", "a lot"),
        negated(condition("TAGS", "GREATER_THAN", "3")),
        pb.SegmentRule(),
        condition("BIRTHDAY_MONTH", "IN", values=["6", "13"]),
    )
    failure = await fails(
        segments.api().CreateSegment(
            pb.CreateSegmentRequest(
                segment=pb.Segment(display_name="", rule=rule), request_id=uuid.uuid4().hex
            )
        )
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.fields) == {
        "segment.display_name",
        "segment.rule.all.rules[1].condition.value",
        "segment.rule.all.rules[2].not.condition.operator",
        "segment.rule.all.rules[3]",
        "segment.rule.all.rules[4].condition.values[1]",
    }
    deep = condition("TIER", "EQUALS", "gold")
    for _ in range(12):
        deep = negated(deep)
    too_deep = await fails(
        segments.api().CreateSegment(
            pb.CreateSegmentRequest(
                segment=pb.Segment(display_name="deep", rule=deep), request_id=uuid.uuid4().hex
            )
        )
    )
    assert too_deep.code == grpc.StatusCode.INVALID_ARGUMENT
    bad_name = await fails(segments.api().GetSegment(pb.GetSegmentRequest(name="members/1")))
    assert bad_name.fields == ["name"]
    bad_page = await fails(
        segments.api().ListSegmentMembers(
            pb.ListSegmentMembersRequest(segment="segments/x", page_size=-1)
        )
    )
    assert bad_page.fields == ["page_size"]


async def test_a_unit_manages_its_own_segments_and_the_group_every_one(
    segments: Segments, figures: Figures
) -> None:
    hotel = unit_marketing("hotel", "insights:read", "segments:write")
    mall = unit_marketing("mall", "insights:read", "segments:write")
    await figures.put(tier="gold")
    own = await segments.create(figures.mine(), caller=hotel)
    assert own.unit == "hotel"
    group = await segments.create(figures.mine())

    seen = await segments.api(hotel).ListSegments(pb.ListSegmentsRequest(page_size=200))
    assert own.name in [s.name for s in seen.segments]
    assert {s.unit for s in seen.segments} == {"hotel"}
    for caller, name in ((mall, own.name), (hotel, group.name)):
        refused = await fails(segments.api(caller).GetSegment(pb.GetSegmentRequest(name=name)))
        assert refused.reason == "UNIT_MISMATCH"
    everyone = await segments.api().GetSegment(pb.GetSegmentRequest(name=own.name))
    assert everyone.segment.unit == "hotel"

    reader = unit_marketing("hotel", "insights:read")
    refused = await fails(segments.create(figures.mine(), caller=reader))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    deleted = await fails(
        segments.api(mall).DeleteSegment(
            pb.DeleteSegmentRequest(name=own.name, request_id=uuid.uuid4().hex)
        )
    )
    assert deleted.reason == "UNIT_MISMATCH"


async def test_the_scheduled_evaluation_moves_members_as_time_passes(
    segments: Segments,
    figures: Figures,
    settings: Settings,
    clock: Clock,
    insights_service: RunningService,
) -> None:
    """`within 90 days` holds on one day and not 20 days later, with no figure changing: the
    full evaluation (hourly) finds it."""
    recent = await figures.put(last_active_at=clock() - timedelta(days=80))
    segment = await segments.create(figures.mine(condition("LAST_ACTIVE", "WITHIN_DAYS", "90")))
    assert await segments.members(segment.name) == [recent]
    clock.advance(days=20)
    try:  # every evaluation meanwhile (the incremental rounds too) sees the later day
        app = insights_service.root
        await evaluate_all(app.uow, app.clock)
        assert await segments.members(segment.name) == []
        counted = await segments.api().GetSegment(pb.GetSegmentRequest(name=segment.name))
        assert counted.segment.member_count == 0
        left = await events_of(settings, events_pb2.SegmentLeft, segment.name, [recent])
        assert left == {recent: ["evaluated"]}
    finally:
        clock.advance(days=-20)
