"""Moved to the shared kernel (`loyalty_kit.kernel.money`): kept so code not yet moved there
still imports it from here."""

from loyalty_kit.kernel.money import (
    AMOUNT,
    CURRENCY,
    DEFAULT_BASE_CURRENCY,
    Amount,
    floor_money,
    format_money,
    fraction_digits,
    is_currency,
    minor_units,
    money,
    parse_amount,
    parse_currency,
    parse_decimal,
    parse_money_decimal,
    quantize_money,
)

__all__ = [
    "AMOUNT",
    "CURRENCY",
    "DEFAULT_BASE_CURRENCY",
    "Amount",
    "floor_money",
    "format_money",
    "fraction_digits",
    "is_currency",
    "minor_units",
    "money",
    "parse_amount",
    "parse_currency",
    "parse_decimal",
    "parse_money_decimal",
    "quantize_money",
]
