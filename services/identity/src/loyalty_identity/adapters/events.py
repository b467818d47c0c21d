"""The identity service's domain events as the protobuf contract (`loyalty.identity.v1`) the
outbox publishes: the one place that knows both. The kit maps every field by name and type
(the channel's name to its enum, a consent purpose to its contract name); this table says only
where the domain's shape differs from the contract's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from functools import lru_cache

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.identity.v1 import events_pb2
from loyalty_kit.contract import EventContract, Rules
from loyalty_kit.kernel.money import Amount, format_money

from loyalty_identity.domain import events
from loyalty_identity.domain.import_spec import CONSENT_PREFIX
from loyalty_identity.domain.order_import import ImportedOrder


def _month_and_day(birthday: date | None) -> tuple[int, int]:
    """Only the month and day of a birthday go out (what birthday benefits need); 0 when none."""
    return (birthday.month, birthday.day) if birthday else (0, 0)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _orders(orders: tuple[ImportedOrder, ...]) -> list[events_pb2.ImportedOrder]:
    """The orders' messages one by one (what the contract's check maps; `legacy_orders_imported`
    makes a chunk's faster)."""
    message = events_pb2.LegacyOrdersImported()
    _add_orders(message, orders)
    return list(message.orders)


def _add_orders(message: events_pb2.LegacyOrdersImported, orders: Sequence[ImportedOrder]) -> None:
    """A chunk's orders (thousands an event) added in place: each field set on the added
    message (no order, amount or time made apart and copied in), the time's seconds counted
    from the epoch (as `Timestamp.FromDatetime` counts them) once per time, and each amount's
    text made once per amount (`_money_text`, shared by the chunks)."""
    add = message.orders.add
    stamps: dict[datetime, tuple[int, int]] = {}
    for order in orders:
        added = add(member_id=order.member_id, order_id=order.order_id)
        amount = added.amount
        amount.currency_code = order.amount.currency
        amount.amount = _money_text(order.amount)
        at = order.occurred_at
        stamp = stamps.get(at)
        if stamp is None:
            since = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - _EPOCH
            stamp = stamps[at] = (since.days * 86_400 + since.seconds, since.microseconds * 1000)
        added.occurred_at.seconds, added.occurred_at.nanos = stamp


@lru_cache(maxsize=65_536)
def _money_text(amount: Amount) -> str:
    """An amount's text as `format_money` makes it; equal amounts (10.5 and 10.50 CNY) have
    the same text. Bounded: a file may hold any number of amounts; its orders mostly repeat
    a few thousand prices."""
    return format_money(amount.value, amount.currency)


def legacy_orders_imported(event: events.LegacyOrdersImported) -> events_pb2.LegacyOrdersImported:
    """A chunk's LegacyOrdersImported: its own fields as the contract maps them, its orders
    added in place (`_add_orders`; `tests/identity/unit/test_import_events.py` holds the two
    equal)."""
    message = CONTRACT.message(replace(event, orders=()))
    assert isinstance(message, events_pb2.LegacyOrdersImported)
    _add_orders(message, event.orders)
    return message


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
    if type(event) is events.LegacyOrdersImported:
        return legacy_orders_imported(event)
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
