"""Birthdays: which members celebrate on a given day. Pure rules, no I/O."""

from __future__ import annotations

import calendar
from datetime import date


def birthdays_on(day: date) -> list[tuple[int, int]]:
    """The (month, day) birthdays celebrated on `day`: those born on 29 February celebrate
    on the 28th in years without one."""
    celebrated = [(day.month, day.day)]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        celebrated.append((2, 29))
    return celebrated


def is_birthday(month: int, day: int) -> bool:
    """A month and day someone can be born on (29 February included)."""
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(2000, month)[1]


def grant_key(day: date) -> str:
    """One birthday coupon per member and year."""
    return f"birthday:{day.year}"
