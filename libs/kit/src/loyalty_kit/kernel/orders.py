"""Past orders a unit brought in after its members (identity's `LegacyOrdersImported`, one event
per committed chunk of an order import), read the same way by every service that follows them:
tiers counts them as qualifying activity (mode ACTIVITY_ONLY, the default), points replays them
as offline receipts under the rules then in force (REPLAY).

Reading a chunk never raises for one order. An entry that cannot be used (a member id that is
no id, an order id that is empty, too long or not text, an amount that is no amount of its
currency or is negative, no time or one in the future, an order id the chunk gave before) is
left out and counted by reason, so a poison entry never blocks its chunk. The reasons are plain
words and the counts hold no personal data: they are what the consumers log.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from loyalty.identity.v1 import order_import_pb2 as contract

from loyalty_kit.errors import InvalidArgument
from loyalty_kit.kernel.money import AMOUNT, is_currency, minor_units
from loyalty_kit.timestamps import EARLIEST, LATEST, moment
from loyalty_kit.validation import MAX_KEY_LENGTH, text_violation

# A till's clock may run a little ahead of ours (as points allows for an earn's time).
FUTURE_TOLERANCE = timedelta(minutes=5)


class OrderMode(StrEnum):
    """What a chunk's orders count for (`loyalty.identity.v1.OrderImportMode`)."""

    ACTIVITY_ONLY = "activity_only"  # qualifying activity, no points (the default)
    REPLAY = "replay"  # offline receipts: points earned, and tiers count those earns
    UNKNOWN = "unknown"  # a mode this build does not know: nobody acts on it

    @classmethod
    def of(cls, number: int) -> OrderMode:
        """The contract's enum number; UNSPECIFIED (0) is the default, ACTIVITY_ONLY."""
        return _MODES.get(number, cls.UNKNOWN)


_MODES: dict[int, OrderMode] = {
    contract.ORDER_IMPORT_MODE_UNSPECIFIED: OrderMode.ACTIVITY_ONLY,
    contract.ORDER_IMPORT_MODE_ACTIVITY_ONLY: OrderMode.ACTIVITY_ONLY,
    contract.ORDER_IMPORT_MODE_REPLAY: OrderMode.REPLAY,
}


class LeftOut(StrEnum):
    """Why an entry of a chunk was left out (counted, never raised)."""

    NO_UNIT = "no_unit"  # the chunk names no unit: none of its orders can be placed
    MEMBER_ID = "invalid_member_id"
    ORDER_ID = "invalid_order_id"
    AMOUNT = "invalid_amount"  # no amount of its currency, or negative
    TIME = "invalid_time"  # not given, or out of the supported range
    FUTURE = "in_future"
    REPEATED = "repeated_in_chunk"  # the same order id earlier in the chunk (the first counts)


class PastOrder(NamedTuple):
    """One usable order of a chunk (a tuple: a chunk holds thousands)."""

    member_id: str  # canonical (lower-case) uuid text
    order_id: str
    amount: Decimal  # not negative; at most the currency's minor digits
    currency: str
    occurred_at: datetime


@dataclass
class PastOrders:
    """A chunk as read: its usable orders in the chunk's order, and what was left out."""

    order_import: str
    unit: str
    mode: OrderMode
    orders: list[PastOrder]
    left_out: Counter[str] = field(default_factory=Counter)
    imported_at: datetime | None = None

    @property
    def size(self) -> int:
        """Entries in the chunk, used or not."""
        return len(self.orders) + sum(self.left_out.values())


def past_orders(event: Any, now: datetime) -> PastOrders:
    """Read a `loyalty.identity.v1.LegacyOrdersImported` (`now`: what counts as the future).
    A few microseconds an order: a chunk of thousands is read in milliseconds."""
    unit = event.unit.strip()
    chunk = PastOrders(event.order_import, unit, OrderMode.of(event.mode), [])
    if event.HasField("imported_at"):
        try:
            chunk.imported_at = moment(event.imported_at, "imported_at")
        except InvalidArgument:
            chunk.imported_at = None
    if not unit:
        chunk.left_out[LeftOut.NO_UNIT] = len(event.orders)
        return chunk
    latest = ((now + FUTURE_TOLERANCE) - _EPOCH) // timedelta(seconds=1)
    members: dict[str, str | None] = {}  # as given -> canonical (None: not an id)
    currencies: dict[str, int | None] = {}  # code -> minor digits (None: not a currency)
    seen: set[str] = set()
    kept, left_out = chunk.orders, chunk.left_out
    # One loop without calls for the usual order: this runs for every order of an import.
    for entry in event.orders:
        given = entry.member_id
        member_id = members.get(given, _UNSEEN)
        if member_id is _UNSEEN:
            member_id = members[given] = _member_id(given)
        if member_id is None:
            left_out[LeftOut.MEMBER_ID] += 1
            continue
        order_id = entry.order_id
        if not order_id.strip() or len(order_id) > MAX_KEY_LENGTH or not _is_text(order_id):
            left_out[LeftOut.ORDER_ID] += 1
            continue
        money = entry.amount
        currency = money.currency_code
        digits = currencies.get(currency, -1)
        if digits == -1:
            digits = currencies[currency] = minor_units(currency) if is_currency(currency) else None
        amount = _amount(money.amount, digits)
        if amount is None:
            left_out[LeftOut.AMOUNT] += 1
            continue
        stamp = entry.occurred_at
        seconds, nanos = stamp.seconds, stamp.nanos
        if (
            not entry.HasField("occurred_at")
            or not _EARLIEST_SECONDS <= seconds < _LATEST_SECONDS
            or not 0 <= nanos <= 999_999_999
        ):
            left_out[LeftOut.TIME] += 1
            continue
        if seconds > latest:
            left_out[LeftOut.FUTURE] += 1
            continue
        if order_id in seen:
            left_out[LeftOut.REPEATED] += 1
            continue
        seen.add(order_id)
        if nanos:  # the epoch plus a timedelta costs a third of fromtimestamp, then replace
            occurred_at = _EPOCH + timedelta(0, seconds, nanos // 1000)
        else:
            occurred_at = datetime.fromtimestamp(seconds, UTC)
        kept.append(_new(PastOrder, (member_id, order_id, amount, currency, occurred_at)))
    return chunk


# A NamedTuple made without its __new__ (a Python function): the same tuple, at C speed.
_new = tuple.__new__


_UNSEEN = ""  # never a canonical member id
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST_SECONDS = (EARLIEST - _EPOCH) // timedelta(seconds=1)
_LATEST_SECONDS = (LATEST - _EPOCH) // timedelta(seconds=1)


def _is_text(text: str) -> bool:
    """Printable ASCII is always text (the usual order id, checked fast); anything else as
    every request's text is checked."""
    return (text.isascii() and text.isprintable()) or text_violation(text, "order_id") is None


def _member_id(text: str) -> str | None:
    """The member id in its one spelling (as identity writes it: checked fast), or None."""
    if _CANONICAL_UUID.fullmatch(text):
        return text
    try:
        return str(uuid.UUID(text)) if len(text) == 36 else None
    except ValueError:
        return None


def _amount(text: str, digits: int | None) -> Decimal | None:
    """A non-negative amount with at most `digits` fraction digits (None: no currency)."""
    # The usual amount ("1234.50": ASCII digits, a point, the currency's digits at most) is
    # checked without the pattern; anything else as below, so the answers are the same.
    whole, dot, fraction = text.partition(".")
    if (
        digits is not None
        and text.isascii()
        and whole.isdigit()
        and len(whole) <= 15
        and (not dot or (fraction.isdigit() and len(fraction) <= min(digits, 6)))
    ):
        return Decimal(text)
    return _amount_by_pattern(text, digits)


def _amount_by_pattern(text: str, digits: int | None) -> Decimal | None:
    if digits is None or not AMOUNT.match(text) or text.startswith("-"):
        return None
    point = text.find(".")
    if point >= 0 and len(text) - point - 1 > digits:
        return None
    return Decimal(text)


def amount_of(currency: str, text: str) -> Decimal | None:
    """A non-negative amount of `currency` (at most its minor digits), or None."""
    return _amount(text, minor_units(currency) if is_currency(currency) else None)
