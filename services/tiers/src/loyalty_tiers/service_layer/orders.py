"""Past orders of a chunk of an order import (identity's LegacyOrdersImported, mode
ACTIVITY_ONLY) recorded as qualifying activity, and the upgrades they earn, in one transaction
and a handful of statements whatever the chunk's size: the members looked up together, the
orders claimed and recorded in one statement, the members with new orders locked together, the
window activity of those it may upgrade summed in one statement, and only the upgraded saved
(see `domain/orders.py` for what counts)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from loyalty_kit.kernel.orders import PastOrders

from loyalty_tiers.domain.errors import NoLadder
from loyalty_tiers.domain.orders import as_activity, latest_by_member
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


class MergedMeanwhile(Exception):
    """A member of the chunk was merged between the look-up and the lock: the chunk is rolled
    back and retried (its orders then count for the survivor)."""


@dataclass
class CountedOrders:
    """What a chunk did, for the log (counts only: no personal data)."""

    recorded: int = 0
    counted_before: int = 0  # orders an earlier import or a points earn counted
    upgraded: int = 0  # members whose tier rose
    skipped: Counter[str] = field(default_factory=Counter)  # by reason


async def count_orders(uow: AbstractUnitOfWork, chunk: PastOrders, now: datetime) -> CountedOrders:
    """A ladder must be in force (else NO_LADDER: the event is retried, then parked and
    replayed once there is one): it says the base currency. Orders that cannot be read or
    counted are skipped and counted, never an error."""
    result = CountedOrders(skipped=Counter(chunk.left_out))
    if not chunk.orders:
        return result
    rules = await uow.tiers.ladder()
    if rules is None:
        raise NoLadder()
    members = sorted({o.member_id for o in chunk.orders})
    holders = await uow.tiers.survivors_of(members)
    erased = await uow.tiers.erased_among(sorted({holders.get(m, m) for m in members}))
    rows, skipped = as_activity(chunk.orders, rules, holders, erased)
    result.skipped.update(skipped)
    recorded = await uow.tiers.record_orders(chunk.unit, chunk.order_import, rows)
    result.recorded, result.counted_before = len(recorded), len(rows) - len(recorded)
    latest = latest_by_member(recorded)
    if not latest:
        return result
    locked = await uow.tiers.ensure_members(list(latest), rules.tiers[0].code, now)
    if await uow.tiers.survivors_of(list(locked)):
        raise MergedMeanwhile()
    # Judged as any activity is: only members with a new order inside their window.
    starts = {m: member.window_start(rules, now) for m, member in locked.items()}
    due = [member for m, member in locked.items() if latest[m] >= starts[m]]
    sums = await uow.tiers.activities([(m.member_id, starts[m.member_id], now) for m in due])
    changed = [m for m in due if m.qualify(rules, rules.activity(sums.get(m.member_id, {})), now)]
    result.upgraded = sum(1 for m in changed for e in m.events if e.reason == "qualified")
    await uow.tiers.save(changed)
    return result
