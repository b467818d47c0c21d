"""One shape for money in every answer: exactly the currency's minor digits."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loyalty_kit.errors import InvalidArgument
from loyalty_kit.money import (
    Amount,
    format_money,
    money,
    parse_amount,
    parse_currency,
    parse_money_decimal,
)


@pytest.mark.parametrize(
    ("value", "currency", "shape"),
    [
        ("100", "JPY", "100"),
        ("100", "CNY", "100.00"),
        ("1", "KWD", "1.000"),
        ("50", "CNY", "50.00"),
        ("20000", "CNY", "20000.00"),
        ("12000.5", "HKD", "12000.50"),
        ("-5", "CNY", "-5.00"),
        ("-1234.5", "KWD", "-1234.500"),
        ("0", "CNY", "0.00"),
        ("-0.00", "CNY", "0.00"),
        ("1E+3", "CNY", "1000.00"),
        ("1E+3", "JPY", "1000"),
    ],
)
def test_an_amount_has_exactly_its_currency_s_minor_digits(
    value: str, currency: str, shape: str
) -> None:
    assert format_money(Decimal(value), currency) == shape
    assert money(Decimal(value), currency).amount == shape
    assert money(Decimal(value), currency).currency_code == currency


@pytest.mark.parametrize(
    ("value", "currency", "shape"),
    [
        ("0.125", "CNY", "0.12"),  # half-even: a tie goes to the even digit
        ("0.135", "CNY", "0.14"),
        ("33.0000000001", "CNY", "33.00"),
        ("99.5", "JPY", "100"),
        ("100.5", "JPY", "100"),
        ("-0.004", "CNY", "0.00"),  # never "-0.00"
        ("1.23456", "KWD", "1.235"),
    ],
)
def test_a_computed_value_with_more_digits_is_rounded_half_even(
    value: str, currency: str, shape: str
) -> None:
    assert format_money(Decimal(value), currency) == shape


def test_the_caller_may_say_which_way_a_value_must_round() -> None:
    assert format_money(Decimal("19999.996"), "CNY", rounding=ROUND_FLOOR) == "19999.99"
    assert format_money(Decimal("0.004"), "CNY", rounding=ROUND_CEILING) == "0.01"


@given(st.decimals(min_value=-(10**15), max_value=10**15, places=6))
def test_every_shape_reads_back_as_the_amount_rounded(value: Decimal) -> None:
    text = format_money(value, "CNY")
    assert "E" not in text and not text.startswith("-0.00")
    assert len(text.partition(".")[2]) == 2
    assert abs(Decimal(text) - value) <= Decimal("0.005")


def test_an_amount_written_in_words_uses_the_same_shape() -> None:
    assert str(Amount("CNY", Decimal("50"))) == "50.00 CNY"
    assert Amount("JPY", Decimal("300")).message().amount == "300"


@pytest.mark.parametrize(
    ("currency", "amount"), [("CNY", "1.005"), ("JPY", "100.5"), ("KWD", "1.0005")]
)
def test_an_input_with_more_digits_than_its_currency_has_is_refused(
    currency: str, amount: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_amount(currency, amount, "order_amount")
    assert [v.field for v in refused.value.field_violations] == ["order_amount.amount"]
    with pytest.raises(InvalidArgument):
        parse_money_decimal(amount, currency, "threshold")


@pytest.mark.parametrize(("currency", "amount"), [("CNY", "1.50"), ("JPY", "100"), ("KWD", "1.5")])
def test_an_input_within_its_currency_s_digits_is_read_exactly(currency: str, amount: str) -> None:
    assert parse_amount(currency, amount, "order_amount").value == Decimal(amount)
    assert parse_money_decimal(amount, currency, "threshold") == Decimal(amount)


@pytest.mark.parametrize("code", ["", "cny", "RMB", "XYZ", "CNYY"])
def test_a_currency_code_the_currency_data_does_not_know_is_refused(code: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_currency(code, "ladder.base_currency_code")
    assert [v.field for v in refused.value.field_violations] == ["ladder.base_currency_code"]
    assert parse_currency("KWD", "ladder.base_currency_code") == "KWD"


@pytest.mark.parametrize("code", ["RMB", "XYZ"])
def test_an_amount_in_a_currency_nobody_knows_is_refused(code: str) -> None:
    """Its minor units are unknown, so it could be neither checked nor written back."""
    with pytest.raises(InvalidArgument) as refused:
        parse_amount(code, "50", "coupon.amount")
    assert [v.field for v in refused.value.field_violations] == ["coupon.amount.currency_code"]
