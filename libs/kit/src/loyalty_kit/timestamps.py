"""google.protobuf.Timestamp <-> aware datetime, and month arithmetic, the same in every service.

A Timestamp from a request is checked before it becomes a datetime: its nanos must be in
0..999,999,999 and its moment in the supported range, years 1900 to 8999 (`EARLIEST`..`LATEST`).
The range leaves centuries of room either side, so moving a moment into any time zone, adding
tier years or a membership's months, or reading it back from PostgreSQL can never overflow.
Anything else is INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from loyalty_kit.errors import FieldViolation, InvalidArgument

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)  # exclusive
_EARLIEST_SECONDS = int(EARLIEST.timestamp())
_LATEST_SECONDS = int(LATEST.timestamp())
RANGE_TEXT = "a moment from 1900-01-01T00:00:00Z to 8999-12-31T23:59:59Z"


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def moment(stamp: Timestamp, field: str) -> datetime:
    """An aware UTC datetime (protobuf's own ToDatetime is naive by default), or
    INVALID_ARGUMENT naming `field` when the stamp is outside the supported range."""
    if not 0 <= stamp.nanos <= 999_999_999:
        raise InvalidArgument.of([FieldViolation(f"{field}.nanos", "from 0 to 999999999")])
    if not _EARLIEST_SECONDS <= stamp.seconds < _LATEST_SECONDS:
        raise InvalidArgument.of([FieldViolation(field, RANGE_TEXT)])
    return stamp.ToDatetime(tzinfo=UTC)


def moment_of(message: Message, name: str, field: str = "") -> datetime | None:
    """The moment in `message.<name>` when it is set (checked as `moment`, named `field` or
    `name`), None when it is not."""
    if not message.HasField(name):
        return None
    return moment(getattr(message, name), field or name)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (or earlier), on the month's last day when the
    day does not exist there (31 January + 1 month = 28/29 February)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)
