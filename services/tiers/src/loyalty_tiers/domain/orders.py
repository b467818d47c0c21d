"""Past orders of a unit as qualifying activity (identity's LegacyOrdersImported in mode
ACTIVITY_ONLY, the default; read by the kit's `kernel.orders.past_orders`). Pure.

Each order counts as one visit and its amount of qualifying spend, and no points: the legacy
balance a member import carried over holds what they earned. Spend is counted in the ladder's
base currency only: an order in another currency is skipped and counted (there is no rate to
convert at that the ladder could trust for a past day). An order of an erased member is skipped
too; one of a member merged since counts for the survivor.

An order's spend and visit count once per (unit, order ID), whoever brings it first: a second
import of the same order adds nothing, and when the same order later earns points through the
points service (its PointsEarned), only that earn's points are added to the activity. Likewise
an order that earned points first is not counted again when an import brings it.

Imported orders are recorded whatever their age, each in its own time (the history and analytics
see the year it happened in); only those inside the member's qualification window count toward
an upgrade, as any activity does. The upgrades are judged once per member rather than once per
chunk: a chunk marks the members whose new orders may lie inside their window, and the upgrade
job judges each marked member on its whole window moments later (`service_layer/orders.py`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from loyalty_kit.kernel.orders import PastOrder

from loyalty_tiers.domain.ladder import Ladder

# The activity row of an imported order: its event id (no points posting behind it), e.g.
# "order:mall/M-20240101-0007".
IMPORTED_ORDER = "order:"
ORDER_POINTS = 0  # an imported order earns no points here
ORDER_VISITS = 1  # it is one visit, as an earn is


def imported_event_id(unit: str, order_id: str) -> str:
    return f"{IMPORTED_ORDER}{unit}/{order_id}"


class Skipped(StrEnum):
    """Why a readable order was not counted (beside the kernel's `LeftOut` reasons)."""

    FOREIGN_CURRENCY = "foreign_currency"  # not the ladder's base currency
    MEMBER_ERASED = "member_erased"


class OrderActivity(NamedTuple):
    """One order to record: for whom, when, how much (a tuple: a chunk holds thousands)."""

    member_id: str  # who holds it: the member, or the survivor it was merged into
    order_id: str
    occurred_at: datetime
    spend: Decimal
    origin: str | None  # the member the order was for, when a survivor holds it


def as_activity(
    orders: Sequence[PastOrder],
    ladder: Ladder,
    holders: Mapping[str, str],
    erased: set[str],
) -> tuple[list[OrderActivity], Counter[str]]:
    """The orders to record (`holders`: the survivor of each member merged since), and how many
    were skipped, by reason."""
    rows: list[OrderActivity] = []
    skipped: Counter[str] = Counter()
    currency = ladder.base_currency
    new, append = tuple.__new__, rows.append  # an OrderActivity without its Python __new__
    for member_id, order_id, amount, order_currency, occurred_at in orders:  # PastOrder
        if order_currency != currency:
            skipped[Skipped.FOREIGN_CURRENCY] += 1
            continue
        holder = holders.get(member_id, member_id) if holders else member_id
        if holder in erased:
            skipped[Skipped.MEMBER_ERASED] += 1
            continue
        origin = member_id if holder != member_id else None
        append(new(OrderActivity, (holder, order_id, occurred_at, amount, origin)))
    return rows, skipped


def to_judge(recorded: Sequence[OrderActivity], window_start: datetime | None) -> list[str]:
    """The members a chunk's recorded orders may upgrade: those with an order at or after
    `window_start`, the earliest any member's window may start (None: the windows depend on
    each member's tier year, so every member with a new order)."""
    return sorted(
        {o.member_id for o in recorded if window_start is None or o.occurred_at >= window_start}
    )
