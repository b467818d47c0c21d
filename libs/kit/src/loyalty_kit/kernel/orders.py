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

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

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


@dataclass(frozen=True, slots=True)
class PastOrder:
    """One usable order of a chunk."""

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
    reader = _Reader(now + FUTURE_TOLERANCE)
    seen: set[str] = set()
    for entry in event.orders:
        read = reader.read(entry)
        if isinstance(read, PastOrder) and read.order_id in seen:
            read = LeftOut.REPEATED
        if isinstance(read, LeftOut):
            chunk.left_out[read] += 1
            continue
        seen.add(read.order_id)
        chunk.orders.append(read)
    return chunk


class _Reader:
    """Reads entries of one chunk; what repeats in a chunk (its members, its currency) is
    checked once."""

    def __init__(self, latest: datetime) -> None:
        self.latest_seconds = (latest - _EPOCH) // timedelta(seconds=1)
        self.members: dict[str, str | None] = {}  # as given -> canonical (None: not an id)
        self.currencies: dict[str, int | None] = {}  # code -> minor digits (None: unknown)

    def read(self, entry: Any) -> PastOrder | LeftOut:
        given = entry.member_id
        member_id = self.members.get(given, _UNSEEN)
        if member_id is _UNSEEN:
            member_id = self.members[given] = _member_id(given)
        if member_id is None:
            return LeftOut.MEMBER_ID
        order_id = entry.order_id
        if not order_id.strip() or len(order_id) > MAX_KEY_LENGTH or not _is_text(order_id):
            return LeftOut.ORDER_ID
        money = entry.amount
        currency = money.currency_code
        digits = self.currencies.get(currency, -1)
        if digits == -1:
            digits = self.currencies[currency] = (
                minor_units(currency) if is_currency(currency) else None
            )
        amount = _amount(money.amount, digits)
        if amount is None:
            return LeftOut.AMOUNT
        if not entry.HasField("occurred_at"):
            return LeftOut.TIME
        stamp = entry.occurred_at
        seconds, nanos = stamp.seconds, stamp.nanos
        if not (_EARLIEST_SECONDS <= seconds < _LATEST_SECONDS and 0 <= nanos <= 999_999_999):
            return LeftOut.TIME
        if seconds > self.latest_seconds:
            return LeftOut.FUTURE
        occurred_at = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
        return PastOrder(member_id, order_id, amount, currency, occurred_at)


_UNSEEN = ""  # never a canonical member id
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST_SECONDS = (EARLIEST - _EPOCH) // timedelta(seconds=1)
_LATEST_SECONDS = (LATEST - _EPOCH) // timedelta(seconds=1)


def _is_text(text: str) -> bool:
    """Printable ASCII is always text (the usual order id, checked fast); anything else as
    every request's text is checked."""
    return (text.isascii() and text.isprintable()) or text_violation(text, "order_id") is None


def _member_id(text: str) -> str | None:
    try:
        return str(uuid.UUID(text)) if len(text) == 36 else None
    except ValueError:
        return None


def _amount(text: str, digits: int | None) -> Decimal | None:
    """A non-negative amount with at most `digits` fraction digits (None: no currency)."""
    if digits is None or not AMOUNT.match(text) or text.startswith("-"):
        return None
    point = text.find(".")
    if point >= 0 and len(text) - point - 1 > digits:
        return None
    return Decimal(text)


def amount_of(currency: str, text: str) -> Decimal | None:
    """A non-negative amount of `currency` (at most its minor digits), or None."""
    return _amount(text, minor_units(currency) if is_currency(currency) else None)
