"""Past orders of an order import as qualifying activity (identity's LegacyOrdersImported, mode
ACTIVITY_ONLY; see `domain/orders.py` for what counts), in two steps:

- `count_orders`, a chunk in one transaction and a handful of statements whatever its size: the
  members looked up together, the orders COPYed into the activity (those counted before
  skipped), and the members they may upgrade marked (`upgrades_due`). No member is locked:
  chunks of one import run at the speed of their inserts, and never wait for each other or for
  members' live activity.
- `judge_marked` (the upgrade job, every second or so): the members marked and then left alone
  for `settle` (no chunk has brought them an order for it; 30 s by default), locked together,
  each judged on its whole window as any activity is; upgrades are TierChanged with reason
  `qualified`. While an import runs, a member's orders come in many chunks: each chunk marks
  the member anew, so the member is judged once the import is done with them, not once per
  chunk, and mostly after the import rather than in its way. Marks commit with the orders that
  made them, so a mark is never seen without them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loyalty_kit.jobs import Chunks
from loyalty_kit.kernel.orders import PastOrders
from loyalty_kit.logs import get_logger

from loyalty_tiers.domain.errors import NoLadder
from loyalty_tiers.domain.orders import as_activity, to_judge
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork

log = get_logger("loyalty.tiers.imports")


@dataclass
class CountedOrders:
    """What a chunk did, for the log (counts only: no personal data)."""

    recorded: int = 0
    counted_before: int = 0  # orders an earlier import or a points earn counted
    marked: int = 0  # members the upgrade job will judge
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
    marked = to_judge(recorded, rules.earliest_window_start(now))
    await uow.tiers.mark_to_judge(marked, now)
    result.marked = len(marked)
    return result


class MergedMeanwhile(Exception):
    """A marked member was merged between its look-up and its lock: the round is undone and
    taken again (then judged as its survivor)."""


@dataclass
class Judged:
    judged: int = 0  # marked members taken
    upgraded: int = 0  # of them, members whose tier rose


async def judge_marked(
    uow: AbstractUnitOfWork, now: datetime, limit: int, settle: timedelta = timedelta(0)
) -> Judged:
    """Judge up to `limit` members marked at least `settle` ago, a few statements for all of
    them. A member merged since its orders were recorded is judged as its survivor, and orders
    recorded for it while the merge was under way become the survivor's first (as the merge
    did with the rest); an erased one is judged no more."""
    rules = await uow.tiers.ladder()
    if rules is None:
        return Judged()  # nothing is marked without a ladder
    marked = await uow.tiers.take_to_judge(limit, now - settle)
    if not marked:
        return Judged()
    survivors = await uow.tiers.survivors_of(marked)
    for absorbed, survivor in sorted(survivors.items()):
        await uow.tiers.move_member(absorbed, survivor)
    holders = sorted({survivors.get(m, m) for m in marked})
    erased = await uow.tiers.erased_among(holders)
    holders = [m for m in holders if m not in erased]
    locked = await uow.tiers.ensure_members(holders, rules.tiers[0].code, now)
    if await uow.tiers.survivors_of(list(locked)):
        raise MergedMeanwhile()
    starts = {m: member.window_start(rules, now) for m, member in locked.items()}
    sums = await uow.tiers.activities([(m, starts[m], now) for m in locked])
    changed = [
        member
        for m, member in locked.items()
        if member.qualify(rules, rules.activity(sums.get(m, {})), now)
    ]
    upgraded = sum(1 for m in changed for e in m.events if e.reason == "qualified")
    await uow.tiers.save(changed)
    return Judged(len(marked), upgraded)


async def run_judgement(
    uow_factory: Callable[[], AbstractUnitOfWork],
    clock: Callable[[], datetime],
    chunk: int,
    settle: timedelta = timedelta(0),
) -> Judged:
    """Judge marked members chunk after chunk until none marked `settle` ago is left."""
    total, chunks = Judged(), Chunks(chunk)
    while chunks.next(total.judged) > 0:
        try:
            async with uow_factory() as uow:
                part = await judge_marked(uow, clock(), chunk, settle)
                await uow.commit()
        except MergedMeanwhile:
            log.info("a member was merged while being judged; judging again")
            continue
        if part.judged == 0:
            return total
        total.judged += part.judged
        total.upgraded += part.upgraded
    return total
