"""Behaviour points in memory: the rules' periods, what an activity awards within its limits,
idempotency by the unit's activity ID, bad input, and a property over any sequence of
activities: the awards per member and period never pass a limit, and reach it exactly."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loyalty_insights.domain import liability
from loyalty_kit.errors import AlreadyExists, DomainError, InvalidArgument
from loyalty_points.domain import ledger
from loyalty_points.domain.activities import (
    LIMIT_REACHED,
    NO_RULE,
    ActivityLimit,
    ActivityRule,
    Period,
    RecordedActivity,
    rule_for,
    window,
)
from loyalty_points.domain.events import ActivityRecorded
from loyalty_points.domain.ledger import PostingKind
from loyalty_points.domain.programme import programme_from_json, programme_to_json
from loyalty_points.service_layer import activities, consumers
from loyalty_points.service_layer.programmes import publish_programme
from loyalty_points.service_layer.settlement import settlement

from tests.points.unit.conftest import World, programme

SHANGHAI = ZoneInfo("Asia/Shanghai")

RULES = [
    ActivityRule("check_in", 10, limits=(ActivityLimit(Period.DAY, 1, per_unit=True),)),
    ActivityRule("review", 50, limits=(ActivityLimit(Period.MONTH, 5),)),
    ActivityRule(
        "survey_answered",
        100,
        funding_unit="group",
        limits=(ActivityLimit(Period.EVER, 1, per_attribute="survey_id"),),
    ),
    ActivityRule("profile_completed", 200, limits=(ActivityLimit(Period.EVER, 1),)),
    ActivityRule(
        "cinema:trailer_watched",
        5,
        limits=(ActivityLimit(Period.DAY, 3), ActivityLimit(Period.WEEK, 10)),
    ),
    # The hotel pays more for a check-in, and funds it from the mall's budget (a joint offer).
    ActivityRule("check_in", 30, unit="hotel", funding_unit="mall"),
]


async def with_rules(world: World) -> World:
    rules = programme()
    rules.activities = list(RULES)
    if world.ledger.programmes:  # a later version takes effect now
        rules.effective_from = world.now
    async with world.uow as uow:
        await publish_programme(uow, rules, "activities", world.now)
        await uow.commit()
    return world


async def record(
    world: World,
    member_id: str,
    activity_type: str,
    *,
    unit: str = "mall",
    activity_id: str | None = None,
    occurred_at: datetime | None = None,
    attributes: dict[str, str] | None = None,
    fingerprint: str | None = None,
) -> RecordedActivity:
    command = activities.Record(
        member_id=member_id,
        unit=unit,
        activity_type=activity_type,
        activity_id=activity_id if activity_id is not None else uuid.uuid4().hex,
        occurred_at=occurred_at,
        fingerprint=fingerprint or f"{member_id}/{activity_type}/{occurred_at}/{attributes}",
        attributes=attributes or {},
    )
    async with world.uow as uow:
        recorded, _ = await activities.record(uow, command, world.directory, world.now)
        await uow.commit()
    return recorded


def test_periods_are_calendar_periods_in_the_programmes_time_zone() -> None:
    # 2026-03-01 17:00 UTC is Monday 2 March 01:00 in Shanghai.
    at = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
    day = window(Period.DAY, at, SHANGHAI)
    assert day == (datetime(2026, 3, 2, tzinfo=SHANGHAI), datetime(2026, 3, 3, tzinfo=SHANGHAI))
    week = window(Period.WEEK, datetime(2026, 3, 8, 12, tzinfo=SHANGHAI), SHANGHAI)
    assert week == (datetime(2026, 3, 2, tzinfo=SHANGHAI), datetime(2026, 3, 9, tzinfo=SHANGHAI))
    month = window(Period.MONTH, datetime(2026, 12, 31, 23, tzinfo=SHANGHAI), SHANGHAI)
    assert month == (
        datetime(2026, 12, 1, tzinfo=SHANGHAI),
        datetime(2027, 1, 1, tzinfo=SHANGHAI),
    )
    assert window(Period.EVER, at, SHANGHAI) == (None, None)


async def test_a_check_in_awards_once_a_day_at_a_unit(world: World) -> None:
    await with_rules(world)
    member = world.member()
    first = await record(world, member, "check_in")
    again = await record(world, member, "check_in")
    elsewhere = await record(world, member, "check_in", unit="cinema")
    world.later(days=1)
    tomorrow = await record(world, member, "check_in")

    assert (first.points, first.funding_unit, first.limit_reason) == (10, "mall", "")
    assert (again.points, again.limit_reason, again.limit) == (
        0,
        LIMIT_REACHED,
        "1 per day at the unit",
    )
    assert again.posting_id == ""
    assert elsewhere.points == 10
    assert tomorrow.points == 10
    assert await world.balance(member) == (30, 0)
    postings = world.ledger.postings_of(member, PostingKind.ACTIVITY)
    assert [p.points for p in postings] == [10, 10, 10]
    assert world.ledger.accounts[member].lifetime_earned == 0  # not a purchase


async def test_an_over_the_limit_activity_is_announced_with_no_points(world: World) -> None:
    await with_rules(world)
    member = world.member()
    for _ in range(6):
        await record(world, member, "review")
    announced = [
        e
        for e in world.published(ActivityRecorded)
        if isinstance(e, ActivityRecorded) and e.member_id == member
    ]
    assert [e.points for e in announced] == [50] * 5 + [0]
    assert announced[-1].limit_reason == LIMIT_REACHED


async def test_a_units_own_rule_wins_and_its_funding_unit_bears_the_points(world: World) -> None:
    await with_rules(world)
    member = world.member()
    at_hotel = await record(world, member, "check_in", unit="hotel")
    survey = await record(world, member, "survey_answered", attributes={"survey_id": "s1"})
    assert (at_hotel.points, at_hotel.funding_unit) == (30, "mall")
    assert (survey.points, survey.funding_unit) == (100, "group")
    async with world.uow as uow:
        day = timedelta(days=1)
        figures = await settlement(uow, world.now - day, world.now + day, world.now)
    assert figures.units["mall"].issued == 30
    assert figures.units["group"].issued == 100
    lots = world.ledger.lots_of(member)
    assert sorted(lot.earned_unit for lot in lots) == ["group", "mall"]


async def test_once_per_survey_and_once_ever(world: World) -> None:
    await with_rules(world)
    member = world.member()
    one = await record(world, member, "survey_answered", attributes={"survey_id": "s1"})
    one_again = await record(world, member, "survey_answered", attributes={"survey_id": "s1"})
    other = await record(world, member, "survey_answered", attributes={"survey_id": "s2"})
    profile = await record(world, member, "profile_completed")
    world.later(days=400)
    profile_again = await record(world, member, "profile_completed")
    assert [one.points, one_again.points, other.points] == [100, 0, 100]
    assert one_again.limit == "1 per survey_id ever"
    assert (profile.points, profile_again.points) == (200, 0)


async def test_a_type_without_a_rule_is_recorded_with_no_points(world: World) -> None:
    await with_rules(world)
    recorded = await record(world, world.member(), "app_sign_up")
    assert (recorded.points, recorded.limit_reason) == (0, NO_RULE)


async def test_the_same_activity_id_answers_as_the_first_time(world: World) -> None:
    await with_rules(world)
    member = world.member()
    first = await record(world, member, "review", activity_id="rv-1", fingerprint="f1")
    retry = await record(world, member, "review", activity_id="rv-1", fingerprint="f1")
    assert retry == first
    assert await world.balance(member) == (50, 0)
    with pytest.raises(AlreadyExists) as refused:
        await record(world, member, "check_in", activity_id="rv-1", fingerprint="f2")
    assert refused.value.reason == "ACTIVITY_ID_REUSED"
    # Another unit's activity IDs are its own.
    assert (await record(world, member, "review", unit="hotel", activity_id="rv-1")).points == 50


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"activity_type": "jogging"}, "activity_type"),
        ({"activity_type": "cinema:trailer_watched"}, "activity_type"),  # the cinema's own
        ({"activity_type": "mall:unknown_thing"}, "activity_type"),  # not declared
        ({"activity_id": ""}, "activity_id"),
        ({"occurred_at": "future"}, "occur_time"),
        ({"activity_type": "survey_answered"}, "attributes[survey_id]"),
        ({"unit": "moon"}, "unit"),
    ],
)
async def test_bad_input_names_the_field(world: World, change: dict[str, str], field: str) -> None:
    await with_rules(world)
    kwargs: dict[str, object] = {"activity_type": "check_in", "unit": "mall"}
    kwargs.update(change)
    if kwargs.get("occurred_at") == "future":
        kwargs["occurred_at"] = world.now + timedelta(hours=1)
    with pytest.raises(InvalidArgument) as refused:
        await record(world, world.member(), **kwargs)  # type: ignore[arg-type]
    assert field in [v.field for v in refused.value.field_violations]


async def test_a_units_own_type_awards_within_day_and_week(world: World) -> None:
    await with_rules(world)
    member = world.member()
    monday = datetime(2026, 3, 9, 10, tzinfo=SHANGHAI)  # the week after START's
    world.now = monday + timedelta(days=6)
    points = []
    for day in range(5):
        for _ in range(4):
            at = monday + timedelta(days=day)
            recorded = await record(
                world, member, "cinema:trailer_watched", unit="cinema", occurred_at=at
            )
            points.append(recorded.points)
    assert points.count(5) == 10  # 3 a day, but 10 a week
    assert sum(points) == 50


# --- the property -------------------------------------------------------------------------------
ACTIVITY = st.tuples(
    st.integers(0, 1),  # member
    st.sampled_from(["check_in", "review", "cinema:trailer_watched"]),
    st.sampled_from(["mall", "hotel", "cinema"]),
    st.integers(0, 24 * 45 - 1),  # hours after the start, over a month and a half
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTIVITY, max_size=60))
def test_awards_never_pass_a_limit_whatever_the_order(
    sequence: list[tuple[int, str, str, int]],
) -> None:
    asyncio.run(_awards_within_limits(sequence))


async def _awards_within_limits(sequence: list[tuple[int, str, str, int]]) -> None:
    world = await with_rules(World())
    start = datetime(2026, 2, 1, tzinfo=UTC)
    world.now = start + timedelta(days=46)
    members = [world.member(), world.member()]
    results = []
    attempts: Counter[tuple[object, ...]] = Counter()
    for who, kind, unit, hours in sequence:
        if kind == "cinema:trailer_watched":
            unit = "cinema"
        at = start + timedelta(hours=hours)
        recorded = await record(world, members[who], kind, unit=unit, occurred_at=at)
        results.append(recorded)
        if kind == "check_in":
            attempts[(who, kind, unit, window(Period.DAY, at, SHANGHAI))] += 1
        if kind == "review":
            attempts[(who, kind, window(Period.MONTH, at, SHANGHAI))] += 1

    awarded = [r for r in results if r.points > 0]
    for rule in RULES:
        for limit in rule.limits:
            per: Counter[tuple[object, ...]] = Counter(
                (
                    r.member_id,
                    r.unit if limit.per_unit else "",
                    window(limit.period, r.occurred_at, SHANGHAI),
                )
                for r in awarded
                if rule_for(RULES, r.activity_type, r.unit) is rule
            )
            assert all(n <= limit.max_awards for n in per.values()), (rule, limit, per)
    # With one limit, a period's awards are exactly the limit or every attempt below it.
    got: Counter[tuple[object, ...]] = Counter()
    for r in awarded:
        who = members.index(r.member_id)
        if r.activity_type == "check_in":
            got[(who, "check_in", r.unit, window(Period.DAY, r.occurred_at, SHANGHAI))] += 1
        if r.activity_type == "review":
            got[(who, "review", window(Period.MONTH, r.occurred_at, SHANGHAI))] += 1
    for key, tried in attempts.items():
        allowed = 1 if key[1] == "check_in" else 5
        if key[1] == "check_in" and key[2] == "hotel":
            allowed = tried  # the hotel's own check-in rule has no limit
        assert got[key] == min(allowed, tried), key
    total = sum(r.points for r in results)
    held = [world.ledger.accounts.get(m) for m in members]
    assert sum(a.available for a in held if a is not None) == total


def test_a_programmes_activity_rules_are_checked_field_by_field() -> None:
    rules = programme()
    rules.activities = [
        ActivityRule("jogging", 10),
        ActivityRule("moon:landing", 10),
        ActivityRule("review", -1, unit="moon", funding_unit="nowhere"),
        ActivityRule("review", 5, unit="moon"),
        ActivityRule("check_in", 10, limits=(ActivityLimit(Period.DAY, 0),)),
        ActivityRule("cinema:trailer_watched", 5, funding_unit="group"),
    ]
    with pytest.raises(InvalidArgument) as refused:
        rules.validate()
    assert sorted(v.field for v in refused.value.field_violations) == [
        "programme.activities[0].activity_type",
        "programme.activities[1].activity_type",
        "programme.activities[2].funding_unit",
        "programme.activities[2].points",
        "programme.activities[2].unit",
        "programme.activities[3]",
        "programme.activities[3].unit",
        "programme.activities[4].limits[0].max_awards",
    ]


def test_activity_rules_read_back_as_written() -> None:
    rules = programme()
    rules.activities = list(RULES)
    again = programme_from_json(1, rules.effective_from, programme_to_json(rules))
    assert again.activities == RULES


async def test_a_merged_or_suspended_member_records_nothing(world: World) -> None:
    await with_rules(world)
    survivor = world.member()
    absorbed = world.member("merged", survivor)
    suspended = world.member("suspended")
    for member, reason in ((absorbed, "MEMBER_MERGED"), (suspended, "MEMBER_SUSPENDED")):
        with pytest.raises(DomainError) as refused:
            await record(world, member, "check_in")
        assert refused.value.reason == reason
    assert not world.ledger.activities  # nothing claimed: a later retry is judged afresh


def test_insights_liability_counts_as_issued_what_the_settlement_does() -> None:
    """An ACTIVITY posting is the funding unit's liability in both books."""
    assert {kind.value for kind in ledger.ISSUING} == set(liability.ISSUING)
    assert {kind.value for kind in ledger.REDEEMING} == set(liability.REDEEMING)
    assert PostingKind.ACTIVITY in ledger.ISSUING


async def test_after_a_merge_the_absorbed_members_awards_count_for_the_survivor(
    world: World,
) -> None:
    await with_rules(world)
    survivor, absorbed = world.member(), world.member()
    assert (await record(world, absorbed, "profile_completed")).points == 200
    async with world.uow as uow:
        await consumers.on_member_merged(uow, survivor, absorbed, world.now)
        await uow.commit()
    again = await record(world, survivor, "profile_completed")
    assert (again.points, again.limit) == (0, "1 per ever")
    assert (await record(world, world.member(), "profile_completed")).points == 200
