"""google.protobuf.Timestamp <-> aware datetime, and month arithmetic, the same in every service."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def moment(stamp: Timestamp) -> datetime:
    """An aware UTC datetime (protobuf's own ToDatetime is naive by default)."""
    return stamp.ToDatetime(tzinfo=UTC)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (or earlier), on the month's last day when the
    day does not exist there (31 January + 1 month = 28/29 February)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)
