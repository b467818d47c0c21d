"""Reading an order import file: its bytes, in parts, become `ParsedOrder`s and `RejectedRow`s
(pure: no I/O; streaming).

The framing and decoding are the member import's (`import_file.py`: records framed on bytes,
each decoded alone, a byte order mark dropped, GBK and GB2312 read as GB18030, a record over
1 MiB rejected unread, row numbers as there). What an order row must be:

- its member: the unit's legacy number (1-64 of A-Z, a-z, 0-9, '_' and '-'; the member
  import's `legacy:<unit>` identity) or a phone (read in the spec's default region without a
  country code). A row with both is matched by its legacy number first, then its phone. A row
  with neither is refused (`MISSING_MEMBER`); a value that is not one, too
  (`INVALID_LEGACY_NUMBER`, `INVALID_PHONE`);
- `order_id`: required, 1-64 of A-Z, a-z, 0-9 and `_ . : -` (`MISSING_ORDER_ID`,
  `INVALID_ORDER_ID`);
- `amount`: a decimal, 0 or more, with at most the currency's minor digits (2 for CNY):
  "1234.5" is CNY 1,234.50; "-3", "1.234", "1e3", "12,00" are `INVALID_AMOUNT`;
- `currency`: an ISO 4217 code (`INVALID_CURRENCY`); an empty or unmapped one is the spec's;
- `occurred_at`: a date (`YYYY-MM-DD`, `YYYY/MM/DD`, `YYYYMMDD`: the start of that day) or an
  RFC 3339 / ISO 8601 time (without an offset: in the import's time zone); in the future
  `DATE_IN_FUTURE`, before 2000 or not a date `INVALID_DATE`;
- control characters in a mapped value refuse the row (`CONTROL_CHARACTERS`), a CSV row with
  more or fewer fields than its header too (`WRONG_COLUMN_COUNT`).

A row is refused for its first problem, in the order above; details name the column and never
show a personal value unmasked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from loyalty_kit.errors import InvalidArgument
from loyalty_kit.kernel.money import minor_units, parse_currency

from loyalty_identity.domain.file_records import RecordReader, _masked_token
from loyalty_identity.domain.import_file import (
    _UNREAD,
    DEFAULT_TIME_ZONE,
    _cached,
    _instant,
)
from loyalty_identity.domain.imports import ImportFileError, RejectedRow, legacy_type
from loyalty_identity.domain.order_import import ORDER_ID, OrderImportSpec, ParsedOrder

FIELDS = ("legacy_number", "phone", "order_id", "amount", "currency", "occurred_at")
_LEGACY, _PHONE, _ORDER, _AMOUNT, _CURRENCY, _AT = range(len(FIELDS))
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # an order before this is taken for a wrong date
_PLAIN_AMOUNT = re.compile(r"\d{1,15}(?:\.\d{1,6})?", re.ASCII)

OrderRow = ParsedOrder | RejectedRow


def known_currency(code: str) -> bool:
    """Whether `code` is an ISO 4217 currency (its minor units known)."""
    try:
        parse_currency(code, "currency")
    except InvalidArgument:
        return False
    return True


class OrderFileReader(RecordReader[ParsedOrder]):
    """Reads one order file. `rows` may be called once; it raises `ImportFileError` when the
    file as a whole cannot be read."""

    not_json = "not a JSON object"
    spec: OrderImportSpec

    def __init__(
        self, spec: OrderImportSpec, *, now: datetime, time_zone: ZoneInfo | None = None
    ) -> None:
        self.spec = spec
        self.bytes_read = 0
        self._now = now if now.tzinfo else now.replace(tzinfo=UTC)
        self._zone: tzinfo = time_zone or DEFAULT_TIME_ZONE
        self._columns = [getattr(spec.mapping, name) for name in FIELDS]
        self._legacy_type = legacy_type(spec.unit)
        self._region = spec.default_region.upper()
        self._currencies: dict[str, int | None] = {}  # code -> minor digits (None: unknown)
        self._times: dict[str, datetime | None] = {}
        self._where: list[str] = []

    # --- the file ---------------------------------------------------------------------------
    def _check_spec(self) -> None:
        super()._check_spec()
        spec = self.spec
        if not spec.mapping.legacy_number and not spec.mapping.phone:
            raise ImportFileError("MISSING_COLUMNS", "the mapping names no legacy number or phone")
        if self._minor(spec.currency) is None:
            raise ImportFileError("INVALID_CURRENCY", f"{spec.currency[:8]!r} is not ISO 4217")

    def _json_row(self, number: int, text: str, item: dict[Any, Any]) -> OrderRow:
        values: list[str] = []
        for slot, key in enumerate(self._keys):
            value = item.get(key) if isinstance(key, str) else None
            if value is None:
                values.append("")
            elif isinstance(value, str):
                values.append(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                values.append(str(value))
            else:
                return self._reject(number, "INVALID_VALUE", slot, "not a string or a number")
        return self._row(number, values, False)

    # --- a row ------------------------------------------------------------------------------
    def _row(self, number: int, v: Sequence[str], clean: bool) -> OrderRow:
        """A row's values (in `FIELDS` order), checked. `clean`: the record holds no control
        character."""
        identities = self._member_of(number, v, clean, legacy_required=False)
        if isinstance(identities, RejectedRow):
            return identities
        if not identities:
            slot = _LEGACY if self._columns[_LEGACY] else _PHONE
            return self._reject(number, "MISSING_MEMBER", slot, "no legacy number or phone")
        order_id = v[_ORDER].strip()
        if not order_id:
            return self._reject(number, "MISSING_ORDER_ID", _ORDER, "empty")
        if not ORDER_ID.fullmatch(order_id):
            return self._reject(
                number,
                "INVALID_ORDER_ID",
                _ORDER,
                f"{_masked_token(order_id)} is not 1-64 characters of A-Z, a-z, 0-9 and _.:-",
            )
        currency = v[_CURRENCY].strip().upper() or self.spec.currency
        digits = self._minor(currency)
        if digits is None:
            return self._reject(
                number, "INVALID_CURRENCY", _CURRENCY, "not an ISO 4217 code such as CNY"
            )
        text = v[_AMOUNT].strip()
        amount = _amount(text, digits)
        if amount is None:
            return self._reject(
                number,
                "INVALID_AMOUNT",
                _AMOUNT,
                f"not an amount of {currency}, 0 or more with at most {digits} decimal places",
            )
        text = v[_AT].strip()
        at = self._times.get(text, _UNREAD)
        if at is _UNREAD:
            at = _cached(self._times, text, _instant(text, self._zone, end_of_day=False))
        if at is None or at < EARLIEST:
            return self._reject(
                number,
                "INVALID_DATE",
                _AT,
                "not a date from 2000 on (YYYY-MM-DD, YYYY/MM/DD, YYYYMMDD or an RFC 3339 time)",
            )
        if at > self._now:
            return self._reject(number, "DATE_IN_FUTURE", _AT, "in the future")
        return ParsedOrder(number, tuple(identities), order_id, amount, currency, at)

    def _minor(self, currency: str) -> int | None:
        found = self._currencies.get(currency, _UNREAD)
        if found is _UNREAD:
            found = minor_units(currency) if known_currency(currency) else None
            if len(self._currencies) < 1000:
                self._currencies[currency] = found
        return found  # type: ignore[no-any-return]

    def _reject(self, number: int, reason: str, slot: int, problem: str) -> RejectedRow:
        return RejectedRow(number, reason, f"{self._where[slot]} ({FIELDS[slot]}): {problem}")


def _amount(text: str, digits: int) -> Decimal | None:
    """A plain decimal (no sign, exponent or grouping), 0 or more, with at most `digits`
    decimal places: counted in the text, which the pattern holds to digits and one point (a
    Decimal keeps the text's places, trailing zeros too)."""
    if not _PLAIN_AMOUNT.fullmatch(text):
        return None
    point = text.find(".")
    if point >= 0 and len(text) - point - 1 > digits:
        return None
    return Decimal(text)


__all__ = ["FIELDS", "OrderFileReader", "known_currency"]
