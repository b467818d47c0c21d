"""Money: an exact decimal with its currency, checked against the currency's minor units.

Shared by every service that handles amounts (points prices purchases, benefits prices coupons,
tiers counts qualifying spend), so `loyalty.common.v1.Money` is read and written the same way
everywhere. The rule of an amount in an answer: exactly the currency's minor digits (ISO 4217,
from Babel's CLDR data): JPY "100", CNY "100.00", KWD "1.000". Non-money decimals (multipliers,
rates, a point's value) keep their own exact shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache, lru_cache

from babel.numbers import get_currency_precision, list_currencies
from loyalty.common.v1 import money_pb2

from loyalty_kit.errors import FieldViolation, InvalidArgument

CURRENCY = re.compile(r"^[A-Z]{3}$")
# The programme's base currency when none is given (points' programme, tiers' ladder).
DEFAULT_BASE_CURRENCY = "CNY"
AMOUNT = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")


@dataclass(frozen=True)
class Amount:
    currency: str
    value: Decimal

    def __str__(self) -> str:
        return f"{format_money(self.value, self.currency)} {self.currency}"

    def message(self) -> money_pb2.Money:
        return money(self.value, self.currency)


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


@lru_cache(maxsize=512)  # bounded: a request may name any string as its currency
def minor_units(currency: str) -> int:
    return int(get_currency_precision(currency))


def format_money(value: Decimal, currency: str, *, rounding: str = ROUND_HALF_EVEN) -> str:
    """The one shape of an amount in an answer: exactly the currency's minor digits, no
    exponent, no "-0". A computed value with more digits (a point's value times points, a
    weighted spend) is rounded, half-even unless the caller says which way it must go."""
    value = value.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=rounding)
    return f"{value.copy_abs() if value.is_zero() else value:f}"


def money(value: Decimal, currency: str, *, rounding: str = ROUND_HALF_EVEN) -> money_pb2.Money:
    """`loyalty.common.v1.Money` of an amount, in the shape of `format_money`."""
    return money_pb2.Money(
        currency_code=currency, amount=format_money(value, currency, rounding=rounding)
    )


def is_currency(code: str) -> bool:
    """Whether `code` is an ISO 4217 code the currency data knows (so its minor units are
    known)."""
    return CURRENCY.match(code) is not None and code in _known_currencies()


def parse_currency(code: str, field: str) -> str:
    """An ISO 4217 code the currency data knows (so its minor units are known), or
    INVALID_ARGUMENT naming `field`."""
    if not is_currency(code):
        raise InvalidArgument.of([FieldViolation(field, "an ISO 4217 code such as CNY")])
    return code


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def fraction_digits(value: Decimal) -> int:
    exponent = int(value.as_tuple().exponent)
    return -exponent if exponent < 0 else 0


def parse_money_decimal(text: str, currency: str, field: str) -> Decimal:
    """A decimal that is an amount of `currency` (a threshold, a spend): at most the
    currency's minor digits, as `parse_amount` requires of a Money, or INVALID_ARGUMENT."""
    value = parse_decimal(text, field, example="1234.56")
    if (digits := fraction_digits(value)) > (allowed := minor_units(currency)):
        raise InvalidArgument.of(
            [FieldViolation(field, f"{currency} has {allowed} decimal places; got {digits}")]
        )
    return value


def parse_amount(currency: str, amount: str, field: str, *, positive: bool = True) -> Amount:
    """An amount as given, or INVALID_ARGUMENT naming `field` (e.g. lines[2].amount)."""
    problems: list[FieldViolation] = []
    if not is_currency(currency):
        problems.append(FieldViolation(f"{field}.currency_code", "an ISO 4217 code such as CNY"))
    if not AMOUNT.match(amount):
        problems.append(FieldViolation(f"{field}.amount", "a decimal such as 1234.56"))
    if problems:
        raise InvalidArgument.of(problems)
    value = parse_money_decimal(amount, currency, f"{field}.amount")
    if positive and value <= 0:
        raise InvalidArgument.of([FieldViolation(f"{field}.amount", "must be greater than zero")])
    return Amount(currency, value)


def quantize_money(value: Decimal, currency: str) -> Decimal:
    """Rounded half-even to the currency's minor units (`format_money` writes it)."""
    return value.quantize(Decimal(1).scaleb(-minor_units(currency)))


def floor_money(value: Decimal, currency: str) -> Decimal:
    """Rounded down to the currency's minor units (a discount never exceeds its exact value)."""
    return value.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_DOWN)
