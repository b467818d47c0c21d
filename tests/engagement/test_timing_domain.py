"""Due times without storage: delays, daily windows and quiet hours in a zone without daylight
saving (Asia/Shanghai) and one with it (America/New_York), windows wrapping past midnight; the
new steps' and fields' validation; a budget never exceeded, whatever the steps and their order."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st
from loyalty_engagement.domain import journeys as j
from loyalty_engagement.domain.timing import (
    DailyWindow,
    after_delay,
    local_day,
    next_open,
    parse_hhmm,
    quiet_until,
)
from loyalty_engagement.service_layer.timer import _birthdays_of
from loyalty_engagement.service_layer.waits import due_of

NIGHT = DailyWindow(time(21), time(9))  # quiet hours 21:00-09:00
OFFICE = DailyWindow(time(10), time(18))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def spec(**changes: object) -> j.JourneySpec:
    base: dict[str, object] = {
        "display_name": "timed",
        "unit": "group",
        "trigger": j.Trigger(j.TriggerKind.PURCHASE),
        "steps": (j.IssueCoupon("welcome-gold", "hotel"),),
    }
    base.update(changes)
    return j.JourneySpec(**base)  # type: ignore[arg-type]


def test_a_window_open_now_is_now_and_a_closed_one_opens_at_its_local_start() -> None:
    # 03:00 UTC is 11:00 in Shanghai (UTC+8, no daylight saving): inside 10-18.
    assert next_open(utc(2026, 12, 1, 3), OFFICE, "Asia/Shanghai") == utc(2026, 12, 1, 3)
    # 12:00 UTC is 20:00 there: the window opens at 10:00 the next day, 02:00 UTC.
    assert next_open(utc(2026, 12, 1, 12), OFFICE, "Asia/Shanghai") == utc(2026, 12, 2, 2)
    # 01:00 UTC is 09:00 there: 10:00 the same day.
    assert next_open(utc(2026, 12, 1, 1), OFFICE, "Asia/Shanghai") == utc(2026, 12, 1, 2)
    # The same moment in New York (UTC-5 in December): 07:00 local, opens at 10:00 = 15:00 UTC.
    assert next_open(utc(2026, 12, 1, 12), OFFICE, "America/New_York") == utc(2026, 12, 1, 15)


def test_a_window_across_daylight_saving_changes_keeps_local_time() -> None:
    # New York moves to UTC-4 on 8 March 2026: 10:00 local is 15:00 UTC before, 14:00 after.
    assert next_open(utc(2026, 3, 7, 23), OFFICE, "America/New_York") == utc(2026, 3, 8, 14)
    assert next_open(utc(2026, 3, 6, 23), OFFICE, "America/New_York") == utc(2026, 3, 7, 15)
    # A window starting at a skipped local time (02:30 that night) opens at 03:30 after it.
    skipped = DailyWindow(time(2, 30), time(4))
    assert next_open(utc(2026, 3, 8, 5), skipped, "America/New_York") == utc(2026, 3, 8, 7, 30)


def test_quiet_hours_defer_to_their_end_and_wrap_past_midnight() -> None:
    # 14:00 UTC is 22:00 in Shanghai: quiet until 09:00 the next morning (01:00 UTC).
    assert quiet_until(utc(2026, 12, 1, 14), NIGHT, "Asia/Shanghai") == utc(2026, 12, 2, 1)
    # 18:00 UTC is 02:00 there: quiet until 09:00 the same local day (01:00 UTC next UTC day).
    assert quiet_until(utc(2026, 12, 1, 18), NIGHT, "Asia/Shanghai") == utc(2026, 12, 2, 1)
    # 04:00 UTC is 12:00 there: not quiet.
    assert quiet_until(utc(2026, 12, 1, 4), NIGHT, "Asia/Shanghai") is None
    # No quiet hours: never deferred.
    assert quiet_until(utc(2026, 12, 1, 14), None, "Asia/Shanghai") is None
    # The programme's zone when the journey names none (Shanghai).
    assert quiet_until(utc(2026, 12, 1, 14), NIGHT, "") == utc(2026, 12, 2, 1)


@given(
    moment=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    zone=st.sampled_from(["Asia/Shanghai", "America/New_York", "Europe/London", "UTC"]),
)
def test_next_open_is_never_earlier_and_falls_in_the_window(moment: datetime, zone: str) -> None:
    now = moment.replace(tzinfo=UTC)
    for window in (OFFICE, NIGHT):
        opened = next_open(now, window, zone)
        assert now <= opened <= now + timedelta(days=2)
        from zoneinfo import ZoneInfo

        local = opened.astimezone(ZoneInfo(zone)).time()
        assert window.holds(local) or opened != now


def test_waits_are_due_after_their_delay_window_or_days() -> None:
    now = utc(2026, 12, 1, 12)
    s = spec()
    assert due_of(s, j.Delay(90), now) == (after_delay(now, 90), "wait")
    assert due_of(s, j.Window(OFFICE), utc(2026, 12, 1, 3)) == (None, "wait")
    assert due_of(s, j.Window(OFFICE), now) == (utc(2026, 12, 2, 2), "wait")
    assert due_of(s, j.UntilPurchase(14), now) == (now + timedelta(days=14), "purchase")


def test_the_new_fields_are_validated_by_name() -> None:
    bad = spec(
        trigger=j.Trigger(j.TriggerKind.INACTIVE),
        steps=(j.Delay(0), j.Window(DailyWindow(time(9), time(9))), j.UntilPurchase(0)),
        time_zone="Mars/Olympus",
        quiet_hours=DailyWindow(time(1), time(1)),
        budget=j.Budget(points=-1, coupons=-2),
    )
    fields = {v.field for v in j.validate(bad)}
    assert fields == {
        "journey.trigger.days",
        "journey.steps[0].delay.seconds",
        "journey.steps[1].window",
        "journey.steps[2].until_purchase.days",
        "journey.time_zone",
        "journey.quiet_hours",
        "journey.budget.points",
        "journey.budget.coupons",
    }
    assert parse_hhmm("21:00") == time(21) and parse_hhmm("9:00") is None
    assert parse_hhmm("25:00") is None


def test_birthdays_of_29_february_are_kept_on_the_28th_in_other_years() -> None:
    assert _birthdays_of(2027, 2, 28) == [(2, 28), (2, 29)]
    assert _birthdays_of(2028, 2, 28) == [(2, 28)]
    assert local_day(utc(2026, 12, 31, 17), "Asia/Shanghai") == (2027, 1, 1)
