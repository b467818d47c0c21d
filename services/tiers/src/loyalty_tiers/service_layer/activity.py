"""Activity from the points service's events, and the upgrade it may bring at once (imported
past orders: `orders.py`).

Each posting is recorded once (by its posting id) and the member's tier is judged at once: an
upgrade happens seconds after the purchase. Refunds reduce the activity but never downgrade on
the spot; retention is judged at the end of the tier year.
"""

from __future__ import annotations

from datetime import datetime

from loyalty_tiers.domain.ladder import Activity, Ladder, Totals
from loyalty_tiers.domain.member_tier import MemberTier
from loyalty_tiers.service_layer.members import member_for_update
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


async def record_activity(
    uow: AbstractUnitOfWork,
    member_id: str,
    posting_id: str,
    occurred_at: datetime,
    unit: str,
    totals: Totals,
    now: datetime,
    *,
    order_id: str = "",
) -> None:
    """Count a points posting (earned, or reversed with negative totals) once, then judge an
    upgrade. Activity of an absorbed member that was under way when the merge landed is the
    survivor's (and goes back with the rest if the merge is undone). An earn names its order:
    one an import counted already adds its points only (see `domain/orders.py`)."""
    survivor = await uow.tiers.merged_into(member_id)
    origin = member_id if survivor else None
    member_id = survivor or member_id
    if await uow.tiers.record_activity(
        member_id, posting_id, occurred_at, unit, totals, origin, order_id=order_id
    ):
        await judge_upgrade(uow, member_id, now)


async def judge_upgrade(uow: AbstractUnitOfWork, member_id: str, now: datetime) -> None:
    """Upgrade at once when the window's activity supports a higher tier; never a downgrade
    here (the tier year decides)."""
    rules = await uow.tiers.ladder()
    if rules is None:
        return
    member = await member_for_update(uow, rules, member_id, now)
    await upgrade(uow, rules, member, now)


async def upgrade(
    uow: AbstractUnitOfWork, rules: Ladder, member: MemberTier, now: datetime
) -> None:
    if member.qualify(rules, await window_activity(uow, rules, member, now), now):
        await uow.tiers.save([member])


async def window_activity(
    uow: AbstractUnitOfWork, rules: Ladder, member: MemberTier, now: datetime
) -> Activity:
    """The member's activity in the qualification window that ends `now`."""
    since = member.window_start(rules, now)
    return rules.activity(await uow.tiers.activity(member.member_id, since, now))
