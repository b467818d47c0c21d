"""The identity service's domain events as the protobuf contract (`loyalty.identity.v1`) the
outbox publishes: the one place that knows both. The kit maps every field by name and type
(the channel's name to its enum, a consent purpose to its contract name); this table says only
where the domain's shape differs from the contract's."""

from __future__ import annotations

from datetime import date, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.common.v1.money_pb2 import Money
from loyalty.identity.v1 import events_pb2
from loyalty_kit.contract import EventContract, Rules
from loyalty_kit.kernel.money import format_money

from loyalty_identity.domain import events
from loyalty_identity.domain.import_spec import CONSENT_PREFIX
from loyalty_identity.domain.order_import import ImportedOrder


def _month_and_day(birthday: date | None) -> tuple[int, int]:
    """Only the month and day of a birthday go out (what birthday benefits need); 0 when none."""
    return (birthday.month, birthday.day) if birthday else (0, 0)


def _orders(orders: tuple[ImportedOrder, ...]) -> list[events_pb2.ImportedOrder]:
    """A chunk's orders (thousands an event) built straight: the same messages the field by
    field rule makes, several times faster."""
    made = []
    for order in orders:
        at = Timestamp()
        at.FromDatetime(order.occurred_at)
        amount = order.amount
        made.append(
            events_pb2.ImportedOrder(
                member_id=order.member_id,
                order_id=order.order_id,
                amount=Money(
                    currency_code=amount.currency,
                    amount=format_money(amount.value, amount.currency),
                ),
                occurred_at=at,
            )
        )
    return made


CONTRACT = EventContract(
    events_pb2,
    {
        events.ProfileChanged: Rules(
            renames={"birthday": ("birthday_month", "birthday_day")},
            convert={"birthday": _month_and_day},
        ),
        events.LegacyOrdersImported: Rules(convert={"orders": _orders}),
    },
)


def to_message(event: events.Event) -> Message:
    if type(event) is events.MembersImported:
        return members_imported(event)
    return CONTRACT.message(event)


def members_imported(event: events.MembersImported) -> events_pb2.MembersImported:
    """A chunk's MembersImported built directly: thousands of members, most sharing the same
    few dates, so each date is made a Timestamp once (the same message the contract's generic
    mapping makes, `tests/identity/unit/test_import_events.py` holds them equal)."""
    stamps: dict[datetime, Timestamp] = {}

    def stamp(at: datetime) -> Timestamp:
        found = stamps.get(at)
        if found is None:
            found = stamps[at] = Timestamp()
            found.FromDatetime(at)
        return found

    message = events_pb2.MembersImported(
        member_import=event.member_import, unit=event.unit, imported_at=stamp(event.imported_at)
    )
    add = message.members.add
    for m in event.members:
        added = add(
            member_id=m.member_id,
            legacy_key=m.legacy_key,
            created=m.created,
            legacy_points=m.legacy_points,
            tier_code=m.tier_code,
            birthday_month=m.birthday_month,
            birthday_day=m.birthday_day,
            tags=m.tags,
        )
        if m.legacy_points_expire_at is not None:
            added.legacy_points_expire_at.CopyFrom(stamp(m.legacy_points_expire_at))
        if m.tier_ends_at is not None:
            added.tier_ends_at.CopyFrom(stamp(m.tier_ends_at))
        if m.joined_at is not None:
            added.joined_at.CopyFrom(stamp(m.joined_at))
        for c in m.consents:
            added.consents.add(
                purpose=CONSENT_PREFIX + c.purpose.name,
                granted=c.granted,
                changed_at=stamp(c.changed_at),
            )
    return message
