"""When a waiting entry is due, in the member's local time: a delay, a daily window (run only
between two local times), quiet hours (a message due in them is deferred to their end). Pure
functions of a moment and an IANA zone; a window may wrap past midnight (21:00-09:00), and a
local time a daylight-saving change skips is read as the clocks show it after the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIME_ZONE = "Asia/Shanghai"  # the programme's zone, when a journey names none


@dataclass(frozen=True)
class DailyWindow:
    """Local times [start, end); start after end wraps past midnight."""

    start: time
    end: time

    def holds(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def zone_of(name: str) -> ZoneInfo:
    return ZoneInfo(name or DEFAULT_TIME_ZONE)


def known_zone(name: str) -> bool:
    if len(name) > 64:
        return False
    try:
        zone_of(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def zone_for(member_zone: str, journey_zone: str) -> str:
    """The zone a member's quiet hours are read in: the member's own when known (and known to
    this system's zone database), else the journey's."""
    return member_zone if member_zone and known_zone(member_zone) else journey_zone


def parse_hhmm(value: str) -> time | None:
    """ "HH:MM" (24-hour) as a time; None when it is not one."""
    try:
        hours, minutes = value.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            return None
        return time(int(hours), int(minutes))
    except ValueError:
        return None


def _at_local(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The moment the local clock in `zone` shows `at` on `day`'s date: the first of two on a
    night the clocks go back; a time the clocks skip is read with the offset before the change
    (02:30 on a spring-forward night is 03:30 after it)."""
    return datetime.combine(day.date(), at, tzinfo=zone).astimezone(UTC)


def next_open(now: datetime, window: DailyWindow, zone_name: str) -> datetime:
    """`now` when the window holds in the zone's local time, else the next moment it opens."""
    zone = zone_of(zone_name)
    local = now.astimezone(zone)
    if window.holds(local.time().replace(tzinfo=None)):
        return now
    for days in range(0, 3):
        candidate = _at_local(local + timedelta(days=days), window.start, zone)
        if candidate > now:
            return candidate
    raise AssertionError("a daily window opens within two days")


def quiet_until(now: datetime, quiet: DailyWindow | None, zone_name: str) -> datetime | None:
    """When the quiet hours `now` falls in end (None: not in quiet hours)."""
    if quiet is None:
        return None
    opened = next_open(now, DailyWindow(quiet.end, quiet.start), zone_name)
    return None if opened == now else opened


@dataclass(frozen=True)
class Schedule:
    """When a scheduled journey enters its segment: once at `once_at`, or at the local time
    `at` every day, or only on `weekdays` (ISO: 1 Monday .. 7 Sunday)."""

    at: time | None = None
    weekdays: tuple[int, ...] = ()
    once_at: datetime | None = None


def last_occurrence(
    schedule: Schedule, zone_name: str, after: datetime, upto: datetime
) -> datetime | None:
    """The latest occurrence of `schedule` in (after, upto], None when none falls in it. Only
    the latest: a timer that was down over several occurrences enters the members once, not
    once for each occurrence missed."""
    if schedule.once_at is not None:
        return schedule.once_at if after < schedule.once_at <= upto else None
    if schedule.at is None:
        return None
    zone = zone_of(zone_name)
    local = upto.astimezone(zone)
    for days in range(0, 8):  # a weekly schedule occurs within any eight days
        day = local - timedelta(days=days)
        if schedule.weekdays and day.isoweekday() not in schedule.weekdays:
            continue
        candidate = _at_local(day, schedule.at, zone)
        if candidate <= upto:
            return candidate if candidate > after else None
    return None


def after_delay(now: datetime, seconds: int) -> datetime:
    return now + timedelta(seconds=seconds)


def local_day(now: datetime, zone_name: str) -> tuple[int, int, int]:
    """The (year, month, day) `now` is in the zone."""
    local = now.astimezone(zone_of(zone_name))
    return local.year, local.month, local.day
