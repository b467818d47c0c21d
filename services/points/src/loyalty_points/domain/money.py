"""Points' own rule numbers; money itself (amounts with their currency) is the kit's."""

from __future__ import annotations

from decimal import Decimal

from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.money import Amount, minor_units, parse_amount, parse_decimal, quantize_money

__all__ = ["Amount", "minor_units", "parse_amount", "parse_factor", "quantize_money"]


def parse_factor(text: str, field: str, *, allow_zero: bool = False) -> Decimal:
    """A decimal rule factor ("1.25"), positive."""
    value = parse_decimal(text, field, example="1.25")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgument.of([FieldViolation(field, "must be a positive decimal")])
    return value
