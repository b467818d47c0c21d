"""Money: an exact decimal with its currency, checked against the currency's minor units.

Shared by every service that handles amounts (points prices purchases, benefits prices coupons),
so `loyalty.common.v1.Money` is read the same way everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from babel.numbers import get_currency_precision

from loyalty_kit.errors import FieldViolation, InvalidArgument

CURRENCY = re.compile(r"^[A-Z]{3}$")
AMOUNT = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")


@dataclass(frozen=True)
class Amount:
    currency: str
    value: Decimal

    def __str__(self) -> str:
        return f"{self.value} {self.currency}"


# Decimals a request may carry (rates, factors, thresholds, spend): finite, at most 18 digits
# before the point and 12 after, so arithmetic on them stays exact and never overflows.
MAX_INTEGER_DIGITS = 18
MAX_FRACTION_DIGITS = 12
MAX_DECIMAL_TEXT = 64
DECIMAL_TEXT = (
    f"a decimal with at most {MAX_INTEGER_DIGITS} digits before the point"
    f" and {MAX_FRACTION_DIGITS} after"
)


def parse_decimal(text: str, field: str, *, example: str = "1234.56") -> Decimal:
    """A finite decimal within the bounds above, or INVALID_ARGUMENT naming `field` (refusing
    'NaN', 'Infinity', '1E+999999999' and 40-digit fractions alike)."""
    value: Decimal | None = None
    if len(text) <= MAX_DECIMAL_TEXT:
        try:
            value = Decimal(text)
        except InvalidOperation:
            value = None
    if (
        value is None
        or not value.is_finite()
        or value.adjusted() >= MAX_INTEGER_DIGITS
        or int(value.as_tuple().exponent) < -MAX_FRACTION_DIGITS
    ):
        raise InvalidArgument.of([FieldViolation(field, f"{DECIMAL_TEXT}, such as {example}")])
    return value


def minor_units(currency: str) -> int:
    return int(get_currency_precision(currency))


def parse_amount(currency: str, amount: str, field: str, *, positive: bool = True) -> Amount:
    """An amount as given, or INVALID_ARGUMENT naming `field` (e.g. lines[2].amount)."""
    problems: list[FieldViolation] = []
    if not CURRENCY.match(currency):
        problems.append(FieldViolation(f"{field}.currency_code", "an ISO 4217 code such as CNY"))
    if not AMOUNT.match(amount):
        problems.append(FieldViolation(f"{field}.amount", "a decimal such as 1234.56"))
    if problems:
        raise InvalidArgument.of(problems)
    value = parse_decimal(amount, f"{field}.amount")
    digits = -value.as_tuple().exponent if value.as_tuple().exponent < 0 else 0  # type: ignore[operator]
    if digits > minor_units(currency):
        raise InvalidArgument.of(
            [
                FieldViolation(
                    f"{field}.amount",
                    f"{currency} has {minor_units(currency)} decimal places; got {digits}",
                )
            ]
        )
    if positive and value <= 0:
        raise InvalidArgument.of([FieldViolation(f"{field}.amount", "must be greater than zero")])
    return Amount(currency, value)


def quantize_money(value: Decimal, currency: str) -> Decimal:
    """Rounded half-even to the currency's minor units."""
    return value.quantize(Decimal(1).scaleb(-minor_units(currency)))


def floor_money(value: Decimal, currency: str) -> Decimal:
    """Rounded down to the currency's minor units (a discount never exceeds its exact value)."""
    return value.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_DOWN)
