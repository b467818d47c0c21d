"""Periods of the figures: a start and an end (exclusive), and the calendar months (UTC) they
touch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from loyalty_kit.errors import FieldViolation, InvalidArgument

MAX_MONTHS = 240  # twenty years of months in one answer


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @classmethod
    def of(cls, start: datetime | None, end: datetime | None) -> Period:
        """A period, or INVALID_ARGUMENT naming each bad field."""
        problems = []
        if start is None:
            problems.append(FieldViolation("start_time", "required"))
        if end is None:
            problems.append(FieldViolation("end_time", "required"))
        if start is not None and end is not None and end <= start:
            problems.append(FieldViolation("end_time", "must be after start_time"))
        if problems:
            raise InvalidArgument.of(problems)
        assert start is not None and end is not None
        return cls(start, end)

    def months(self) -> list[str]:
        """ "YYYY-MM" of every month the period touches, oldest first."""
        start, end = self.start.astimezone(UTC), self.end.astimezone(UTC)
        year, month = start.year, start.month
        found: list[str] = []
        while (year, month) <= (end.year, end.month) and len(found) < MAX_MONTHS:
            if datetime(year, month, 1, tzinfo=UTC) < end:
                found.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return found

    def month_ends(self) -> list[tuple[str, datetime]]:
        """Every month the period touches with the moment it ends: the first of the next month,
        or the period's end if sooner."""
        found = []
        for month in self.months():
            year, number = int(month[:4]), int(month[5:])
            year, number = (year + 1, 1) if number == 12 else (year, number + 1)
            found.append((month, min(datetime(year, number, 1, tzinfo=UTC), self.end)))
        return found
