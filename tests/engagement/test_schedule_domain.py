"""Schedules over a segment, badge conditions and quiet hours in the member's zone, without
storage: a schedule's latest occurrence in a span (daily, weekly, once; across a daylight-saving
change), its validation by field, badges held and lacked, and the zone quiet hours are read in."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st
from loyalty_engagement.domain import journeys as j
from loyalty_engagement.domain.timing import (
    DailyWindow,
    Schedule,
    last_occurrence,
    quiet_until,
    zone_for,
)

MONDAY_TEN = Schedule(time(10), (1,))
DAILY_NINE = Schedule(time(9))
NIGHT = DailyWindow(time(21), time(9))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def scheduled(schedule: Schedule | None, segment: str = "segments/champions") -> j.JourneySpec:
    return j.JourneySpec(
        display_name="weekly",
        unit="group",
        trigger=j.Trigger(j.TriggerKind.SCHEDULE, segment=segment, schedule=schedule),
        steps=(j.ChangeTags(("journey:weekly",)),),
    )


def test_a_weekly_schedule_occurs_on_its_weekday_at_its_local_time() -> None:
    # 7 December 2026 is a Monday; 10:00 in Shanghai is 02:00 UTC.
    monday = utc(2026, 12, 7, 2)
    assert (
        last_occurrence(MONDAY_TEN, "Asia/Shanghai", utc(2026, 12, 1), utc(2026, 12, 7, 1)) is None
    )
    assert last_occurrence(MONDAY_TEN, "Asia/Shanghai", utc(2026, 12, 1), monday) == monday
    assert (
        last_occurrence(MONDAY_TEN, "Asia/Shanghai", utc(2026, 12, 1), utc(2026, 12, 12)) == monday
    )
    # Once taken (the sweep goes on from it), the same Monday does not occur again.
    assert last_occurrence(MONDAY_TEN, "Asia/Shanghai", monday, utc(2026, 12, 13)) is None
    assert last_occurrence(MONDAY_TEN, "Asia/Shanghai", monday, utc(2026, 12, 14, 2)) == utc(
        2026, 12, 14, 2
    )


def test_a_daily_schedule_missed_for_days_occurs_once_at_its_latest() -> None:
    after, upto = utc(2026, 12, 1), utc(2026, 12, 5, 12)
    assert last_occurrence(DAILY_NINE, "UTC", after, upto) == utc(2026, 12, 5, 9)


def test_a_daily_schedule_follows_the_local_clock_across_daylight_saving() -> None:
    # New York: 09:00 is 14:00 UTC in winter, 13:00 UTC after 8 March 2026.
    zone = "America/New_York"
    assert last_occurrence(DAILY_NINE, zone, utc(2026, 3, 6), utc(2026, 3, 7, 20)) == utc(
        2026, 3, 7, 14
    )
    assert last_occurrence(DAILY_NINE, zone, utc(2026, 3, 8), utc(2026, 3, 9, 20)) == utc(
        2026, 3, 9, 13
    )


def test_a_one_off_schedule_occurs_once() -> None:
    once = Schedule(once_at=utc(2026, 12, 24, 12))
    assert last_occurrence(once, "UTC", utc(2026, 12, 1), utc(2026, 12, 24, 11)) is None
    assert last_occurrence(once, "UTC", utc(2026, 12, 1), utc(2026, 12, 25)) == once.once_at
    assert last_occurrence(once, "UTC", utc(2026, 12, 24, 12), utc(2026, 12, 31)) is None


@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1)),
    st.integers(min_value=1, max_value=30 * 24),
    st.sets(st.integers(min_value=1, max_value=7), max_size=7),
)
def test_consecutive_sweeps_take_each_occurrence_at_most_once(
    start: datetime, hours: int, weekdays: set[int]
) -> None:
    """Sweeping hour by hour takes each occurrence once, in order, at its local time and on
    its weekdays only."""
    schedule = Schedule(time(10, 30), tuple(sorted(weekdays)))
    last = now = start.replace(tzinfo=UTC)
    taken: list[datetime] = []
    for _ in range(hours):
        now += timedelta(hours=1)
        found = last_occurrence(schedule, "Asia/Shanghai", last, now)
        if found is not None:
            taken.append(found)
            last = found
    assert taken == sorted(set(taken))
    assert all((t.hour, t.minute) == (2, 30) for t in taken)  # 10:30 in Shanghai
    assert all(not weekdays or t.isoweekday() in weekdays for t in taken)
    assert len({t.date() for t in taken}) == len(taken)


def test_a_schedule_trigger_is_validated_by_field() -> None:
    assert j.validate(scheduled(MONDAY_TEN)) == []
    fields = {v.field for v in j.validate(scheduled(None))}
    assert fields == {"journey.trigger.schedule"}
    fields = {v.field for v in j.validate(scheduled(MONDAY_TEN, segment="champions"))}
    assert fields == {"journey.trigger.segment"}
    both = Schedule(time(10), (1,), utc(2026, 12, 24))
    assert {v.field for v in j.validate(scheduled(both))} == {"journey.trigger.schedule.once_time"}
    bad_day = Schedule(time(10), (0, 8))
    assert {v.field for v in j.validate(scheduled(bad_day))} == {
        "journey.trigger.schedule.days_of_week[0]",
        "journey.trigger.schedule.days_of_week[1]",
    }
    purchase = j.JourneySpec(
        "p", "group", j.Trigger(j.TriggerKind.PURCHASE, schedule=DAILY_NINE), (j.Delay(60),)
    )
    assert {v.field for v in j.validate(purchase)} == {"journey.trigger.schedule"}


def test_badge_conditions_admit_holders_and_lackers() -> None:
    holders = j.Conditions(held_badges=("explorer",))
    lackers = j.Conditions(lacking_badges=("explorer",))
    explorer = j.MemberFacts(badges=frozenset({"explorer", "early-bird"}))
    nobody = j.MemberFacts()
    assert j.conditions_hold(holders, "", explorer)
    assert not j.conditions_hold(holders, "", nobody)
    assert j.conditions_hold(lackers, "", nobody)
    assert not j.conditions_hold(lackers, "", explorer)
    both = j.Conditions(held_badges=("explorer", "diner"))
    assert not j.conditions_hold(both, "", explorer)
    assert holders.needs_badges and not j.Conditions().needs_badges
    bad = scheduled(MONDAY_TEN)
    bad = j.JourneySpec(**{**bad.__dict__, "conditions": j.Conditions(held_badges=(" ",))})
    assert {v.field for v in j.validate(bad)} == {"journey.conditions.held_badges[0]"}


def test_quiet_hours_are_read_in_the_members_zone_when_known() -> None:
    assert zone_for("America/New_York", "Asia/Shanghai") == "America/New_York"
    assert zone_for("", "Asia/Shanghai") == "Asia/Shanghai"
    assert zone_for("Mars/Olympus", "Asia/Shanghai") == "Asia/Shanghai"
    # 14:00 UTC: 22:00 in Shanghai (quiet until 09:00 there, 01:00 UTC), 09:00 in New York
    # in winter (open).
    now = utc(2026, 12, 7, 14)
    assert quiet_until(now, NIGHT, zone_for("", "Asia/Shanghai")) == utc(2026, 12, 8, 1)
    assert quiet_until(now, NIGHT, zone_for("America/New_York", "Asia/Shanghai")) is None
    # 03:00 UTC: 22:00 in New York: quiet until 09:00 there, 14:00 UTC.
    late = utc(2026, 12, 8, 3)
    assert quiet_until(late, NIGHT, zone_for("America/New_York", "Asia/Shanghai")) == utc(
        2026, 12, 8, 14
    )
