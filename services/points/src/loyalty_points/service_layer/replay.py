"""Replaying a chunk of an order import (identity's LegacyOrdersImported, mode REPLAY) as offline
receipts, in one transaction and a handful of statements whatever the chunk's size: the
accounts locked together, the members' tier changes and the programme versions covering the
chunk's order times read at once, each order decided in memory under the version then in force,
the orders claimed in one statement, and every earn written in bulk (see `domain/replay.py` for
how each order earns)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from loyalty_kit.kernel.orders import PastOrders

from loyalty_points.domain.account import Account
from loyalty_points.domain.programme import badges_held, in_force
from loyalty_points.domain.replay import Receipt, Skip, earn_replayed, receipt, tier_then
from loyalty_points.service_layer.accounts import lock_holders
from loyalty_points.service_layer.ports import PointsWork


@dataclass
class Replayed:
    """What a chunk did, for the log (counts only: no personal data)."""

    earned: int = 0
    points: int = 0
    expired: int = 0  # of `points`, those that had expired already
    earned_before: int = 0  # orders a points earn (live, or an earlier replay) claimed
    skipped: Counter[str] = field(default_factory=Counter)  # by reason


async def replay_orders(uow: PointsWork, chunk: PastOrders, now: datetime) -> Replayed:
    result = Replayed(skipped=Counter(chunk.left_out))
    if not chunk.orders:
        return result
    holders = await lock_holders(uow.ledger, [o.member_id for o in chunk.orders], now)
    looked_up = {
        a.member_id
        for o in chunk.orders
        if (a := holders[o.member_id]).tier_known_at(o.occurred_at) is None
    }
    changes = await uow.ledger.tier_changes(sorted(looked_up))
    holdings = await uow.ledger.badge_holdings(sorted({a.member_id for a in holders.values()}))
    times = [o.occurred_at for o in chunk.orders]
    versions = await uow.ledger.programmes_between(min(times), max(times))
    receipts: list[Receipt] = []
    for order in chunk.orders:
        account = holders[order.member_id]
        tier = tier_then(account, changes.get(account.member_id, []), order.occurred_at)
        programme = in_force(versions, order.occurred_at)
        badges = badges_held(holdings.get(account.member_id, []), order.occurred_at)
        decided = receipt(order, chunk.unit, account, programme, tier, badges)
        if isinstance(decided, Skip):
            result.skipped[decided] += 1
        else:
            receipts.append(decided)
    claimed = await uow.ledger.claim_orders([r.record for r in receipts])
    earned: dict[str, Account] = {}
    reason = f"replayed from {chunk.order_import}"
    for replayed in receipts:
        if (replayed.unit, replayed.order.order_id) not in claimed:
            result.earned_before += 1
            continue
        account = holders[replayed.order.member_id]
        posting = earn_replayed(account, replayed, reason, now)
        earned[account.member_id] = account
        result.earned += 1
        result.points += posting.points
        result.expired += posting.points if replayed.lapsed(now) else 0
    await uow.ledger.save_many(list(earned.values()), now)
    return result
