"""A chunk's MembersImported and LegacyOrdersImported built directly are the messages the
contract's generic mapping (or the protobuf library's own conversions) make, field for field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.identity.v1 import events_pb2, order_import_pb2
from loyalty_identity.adapters.events import (
    CONTRACT,
    legacy_orders_imported,
    members_imported,
    to_message,
)
from loyalty_identity.domain.events import LegacyOrdersImported, MembersImported
from loyalty_identity.domain.member import ConsentPurpose
from loyalty_identity.domain.member_import import ImportedConsent, ImportedMember
from loyalty_identity.domain.order_import import ImportedOrder, OrderImportMode
from loyalty_kit.kernel.money import Amount, money


def _event(size: int) -> MembersImported:
    now = datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
    ends = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    members = tuple(
        ImportedMember(
            member_id=f"m{i}",
            legacy_key=f"{i:064x}",
            created=i % 3 != 0,
            legacy_points=i * 7 % 5000,
            legacy_points_expire_at=now + timedelta(days=i % 4) if i % 2 else None,
            tier_code="gold" if i % 5 == 0 else "",
            tier_ends_at=ends if i % 5 == 0 else None,
            birthday_month=i % 13,
            birthday_day=i % 29 if i % 13 else 0,
            tags=("bu:mall-active", f"legacy:tier-{i % 3}") if i % 4 == 0 else (),
            consents=(
                (
                    ImportedConsent(ConsentPurpose.PERSONALISED_OFFERS, i % 2 == 0, now),
                    ImportedConsent(ConsentPurpose.MARKETING_SMS, True, now - timedelta(days=i)),
                )
                if i % 6 == 0
                else ()
            ),
            joined_at=now - timedelta(days=365 + i) if i % 7 else None,
        )
        for i in range(size)
    )
    return MembersImported("memberImports/abc", "mall", members, now)


def test_members_imported_is_the_generic_message() -> None:
    event = _event(200)
    generic = CONTRACT.message(event)
    direct = members_imported(event)
    assert direct == generic
    assert direct.SerializeToString(deterministic=True) == generic.SerializeToString(
        deterministic=True
    )
    assert to_message(event) == generic
    assert len(direct.members) == 200
    assert not direct.members[0].HasField("legacy_points_expire_at")
    assert direct.members[1].HasField("legacy_points_expire_at")
    assert not direct.members[0].HasField("joined_at")
    assert direct.members[1].joined_at.ToDatetime(tzinfo=UTC) == datetime(
        2024, 2, 29, 8, 30, tzinfo=UTC
    )
    offers, sms = direct.members[6].consents
    assert (offers.purpose, offers.granted) == ("CONSENT_PURPOSE_PERSONALISED_OFFERS", True)
    assert (sms.purpose, sms.changed_at.ToDatetime(tzinfo=UTC)) == (
        "CONSENT_PURPOSE_MARKETING_SMS",
        datetime(2025, 2, 23, 8, 30, tzinfo=UTC),
    )


def test_an_empty_chunk() -> None:
    event = _event(0)
    assert members_imported(event) == CONTRACT.message(event)


def _orders_event() -> LegacyOrdersImported:
    shanghai = timezone(timedelta(hours=8))
    times = [
        datetime(2025, 3, 1, 8, 30, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=shanghai),
        datetime(1969, 12, 31, 23, 59, 58, 250_000, tzinfo=UTC),  # before the epoch
        datetime(2025, 6, 1, 12, 0, 0, 1),  # no zone: UTC, as Timestamp.FromDatetime reads it
    ]
    amounts = [
        Amount("CNY", Decimal("10.5")),
        Amount("CNY", Decimal("10.50")),  # the same amount spelt otherwise: the same text
        Amount("CNY", Decimal("2999.999")),
        Amount("JPY", Decimal("1200")),
        Amount("USD", Decimal("0.01")),
    ]
    orders = tuple(
        ImportedOrder(f"m{i}", f"ORD{i:06d}", amounts[i % len(amounts)], times[i % len(times)])
        for i in range(40)
    )
    return LegacyOrdersImported(
        "orderImports/abc", "mall", OrderImportMode.ACTIVITY_ONLY, orders, times[0]
    )


def test_legacy_orders_imported_is_the_message_made_field_by_field() -> None:
    event = _orders_event()
    expected = events_pb2.LegacyOrdersImported(
        order_import="orderImports/abc",
        unit="mall",
        mode=order_import_pb2.ORDER_IMPORT_MODE_ACTIVITY_ONLY,
    )
    expected.imported_at.FromDatetime(event.imported_at)
    for order in event.orders:
        at = Timestamp()
        at.FromDatetime(order.occurred_at)
        expected.orders.append(
            events_pb2.ImportedOrder(
                member_id=order.member_id,
                order_id=order.order_id,
                amount=money(order.amount.value, order.amount.currency),
                occurred_at=at,
            )
        )
    direct = legacy_orders_imported(event)
    assert direct == expected
    assert to_message(event) == expected
    assert CONTRACT.message(event) == expected
    assert [o.amount.amount for o in direct.orders[:5]] == [
        "10.50",
        "10.50",
        "3000.00",
        "1200",
        "0.01",
    ]
    assert direct.orders[2].occurred_at.seconds == -2


def test_an_empty_chunk_of_orders() -> None:
    event = LegacyOrdersImported(
        "orderImports/abc", "mall", OrderImportMode.REPLAY, (), datetime(2025, 3, 1, tzinfo=UTC)
    )
    assert legacy_orders_imported(event) == CONTRACT.message(event)
    assert not legacy_orders_imported(event).orders
