"""The identity service's domain events as the protobuf contract (`loyalty.identity.v1`) the
outbox publishes: the one place that knows both. The kit maps every field by name and type
(the channel's name to its enum, a consent purpose to its contract name); this table says only
where the domain's shape differs from the contract's."""

from __future__ import annotations

from datetime import date

from google.protobuf.message import Message
from loyalty.identity.v1 import events_pb2
from loyalty_kit.contract import EventContract, Rules

from loyalty_identity.domain import events


def _month_and_day(birthday: date | None) -> tuple[int, int]:
    """Only the month and day of a birthday go out (what birthday benefits need); 0 when none."""
    return (birthday.month, birthday.day) if birthday else (0, 0)


CONTRACT = EventContract(
    events_pb2,
    {
        events.ProfileChanged: Rules(
            renames={"birthday": ("birthday_month", "birthday_day")},
            convert={"birthday": _month_and_day},
        ),
    },
)


def to_message(event: events.Event) -> Message:
    return CONTRACT.message(event)
