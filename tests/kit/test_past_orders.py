"""Reading a chunk of imported past orders (identity's LegacyOrdersImported) as tiers and points
both do: usable orders kept in order, every other entry left out and counted by reason, never
raised, so one poison entry never blocks its chunk."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loyalty.common.v1.money_pb2 import Money
from loyalty.identity.v1 import events_pb2 as events
from loyalty.identity.v1 import order_import_pb2 as contract
from loyalty_kit.kernel import orders as kernel_orders
from loyalty_kit.kernel.orders import LeftOut, OrderMode, amount_of, past_orders
from loyalty_kit.timestamps import timestamp

NOW = datetime(2026, 12, 10, 8, tzinfo=UTC)
ANN = str(uuid.UUID(int=1, version=4))


def entry(
    order_id: str = "M-1",
    amount: str = "12.50",
    currency: str = "CNY",
    member_id: str = ANN,
    at: datetime | None = NOW - timedelta(days=3),
) -> events.ImportedOrder:
    found = events.ImportedOrder(
        member_id=member_id, order_id=order_id, amount=Money(currency_code=currency, amount=amount)
    )
    if at is not None:
        found.occurred_at.CopyFrom(timestamp(at))
    return found


def chunk(
    *entries: events.ImportedOrder, unit: str = "mall", mode: int = 0
) -> events.LegacyOrdersImported:
    return events.LegacyOrdersImported(
        order_import="orderImports/o-1",
        unit=unit,
        mode=contract.OrderImportMode.ValueType(mode),
        orders=list(entries),
    )


def test_a_usable_order_is_read_with_its_exact_amount_and_time() -> None:
    at = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)
    read = past_orders(chunk(entry(amount="1234.56", at=at)), NOW)

    (order,) = read.orders
    assert (order.member_id, order.order_id, order.amount, order.currency) == (
        ANN,
        "M-1",
        Decimal("1234.56"),
        "CNY",
    )
    assert order.occurred_at == at
    assert (read.order_import, read.unit, read.left_out, read.size) == (
        "orderImports/o-1",
        "mall",
        Counter(),
        1,
    )


@pytest.mark.parametrize(
    ("number", "mode"),
    [
        (contract.ORDER_IMPORT_MODE_UNSPECIFIED, OrderMode.ACTIVITY_ONLY),
        (contract.ORDER_IMPORT_MODE_ACTIVITY_ONLY, OrderMode.ACTIVITY_ONLY),
        (contract.ORDER_IMPORT_MODE_REPLAY, OrderMode.REPLAY),
        (7, OrderMode.UNKNOWN),
    ],
)
def test_the_mode_defaults_to_activity_only(number: int, mode: OrderMode) -> None:
    assert past_orders(chunk(mode=number), NOW).mode is mode


def test_a_member_id_is_read_in_its_one_spelling() -> None:
    upper = ANN.upper()
    read = past_orders(chunk(entry(member_id=upper)), NOW)
    assert read.orders[0].member_id == ANN


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (entry(member_id=""), LeftOut.MEMBER_ID),
        (entry(member_id="members/" + ANN), LeftOut.MEMBER_ID),
        (entry(member_id="not-a-uuid-but-exactly-36-characters!"), LeftOut.MEMBER_ID),
        (entry(order_id=""), LeftOut.ORDER_ID),
        (entry(order_id="   "), LeftOut.ORDER_ID),
        (entry(order_id="x" * 129), LeftOut.ORDER_ID),
        (entry(order_id="M-1\n"), LeftOut.ORDER_ID),
        (entry(order_id="M\u202e1"), LeftOut.ORDER_ID),
        (entry(amount="-1.00"), LeftOut.AMOUNT),
        (entry(amount="12.345"), LeftOut.AMOUNT),
        (entry(amount="1e3"), LeftOut.AMOUNT),
        (entry(amount="NaN"), LeftOut.AMOUNT),
        (entry(amount=""), LeftOut.AMOUNT),
        (entry(amount="100.5", currency="JPY"), LeftOut.AMOUNT),
        (entry(currency="XYZ"), LeftOut.AMOUNT),
        (entry(currency=""), LeftOut.AMOUNT),
        (entry(at=None), LeftOut.TIME),
        (entry(at=NOW + timedelta(hours=1)), LeftOut.FUTURE),
    ],
)
def test_an_unusable_entry_is_left_out_and_the_rest_goes_through(
    bad: events.ImportedOrder, reason: LeftOut
) -> None:
    read = past_orders(chunk(entry("A"), bad, entry("Z")), NOW)

    assert [o.order_id for o in read.orders] == ["A", "Z"]
    assert read.left_out == Counter({reason: 1})
    assert read.size == 3


def test_a_time_out_of_range_is_left_out() -> None:
    bad = entry()
    bad.occurred_at.seconds = -(10**12)
    worse = entry("M-2")
    worse.occurred_at.nanos = -1
    assert past_orders(chunk(bad, worse), NOW).left_out == Counter({LeftOut.TIME: 2})


def test_a_clock_a_little_ahead_is_not_the_future() -> None:
    read = past_orders(chunk(entry(at=NOW + timedelta(minutes=4))), NOW)
    assert len(read.orders) == 1


def test_an_order_given_twice_in_a_chunk_counts_the_first() -> None:
    read = past_orders(chunk(entry("A", "1.00"), entry("A", "2.00"), entry("B")), NOW)

    assert [(o.order_id, o.amount) for o in read.orders] == [
        ("A", Decimal("1.00")),
        ("B", Decimal("12.50")),
    ]
    assert read.left_out == Counter({LeftOut.REPEATED: 1})


def test_text_other_than_ascii_is_an_order_id() -> None:
    read = past_orders(chunk(entry("影城-订单-0001"), entry("Ünïcødé 7")), NOW)
    assert len(read.orders) == 2


def test_a_chunk_without_a_unit_uses_none_of_its_orders() -> None:
    read = past_orders(chunk(entry("A"), entry("B"), unit="  "), NOW)
    assert (read.orders, read.left_out) == ([], Counter({LeftOut.NO_UNIT: 2}))


def test_zero_is_an_amount_and_each_currency_has_its_digits() -> None:
    assert amount_of("CNY", "0") == Decimal(0)
    assert amount_of("JPY", "1500") == Decimal(1500)
    assert amount_of("KWD", "1.125") == Decimal("1.125")
    assert amount_of("CNY", "+1.00") is None


@given(
    st.one_of(
        st.from_regex(r"\A-?[0-9]{0,17}(\.[0-9]{0,8})?\Z"),
        st.text(alphabet="0123456789.-+e_ \n\u0661\u00b2", max_size=20),
    ),
    st.sampled_from([None, 0, 2, 3]),
)
def test_the_usual_amounts_fast_path_answers_as_the_pattern_does(
    text: str, digits: int | None
) -> None:
    assert kernel_orders._amount(text, digits) == kernel_orders._amount_by_pattern(text, digits)


def test_times_with_and_without_a_fraction_of_a_second_are_read_exactly() -> None:
    for at in (
        datetime(2025, 3, 1, 9, 30, 15, tzinfo=UTC),
        datetime(2025, 3, 1, 9, 30, 15, 999_999, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
    ):
        [order] = past_orders(chunk(entry(at=at)), NOW).orders
        assert order.occurred_at == at and order.occurred_at.tzinfo is UTC
