"""Paid memberships (会员订阅): a unit sells a tier for some months; each order buys one period,
once; a refund of any of its orders ends the membership at once."""

from __future__ import annotations

from datetime import datetime

from loyalty_tiers.domain.errors import MembershipOrderNotFound, MembershipOrderUsed
from loyalty_tiers.domain.grants import check_membership
from loyalty_tiers.service_layer.grants import Granted, grant_of
from loyalty_tiers.service_layer.ladders import ladder
from loyalty_tiers.service_layer.members import member_for_update, refuse_if_erased
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


async def purchase_membership(
    uow: AbstractUnitOfWork,
    member_id: str,
    unit: str,
    tier: str,
    order_id: str,
    months: int,
    now: datetime,
) -> Granted:
    """A paid membership: the tier for the months bought. The same tier bought again at the
    same unit while it runs renews it (the months are added to its end)."""
    rules = await ladder(uow)
    check_membership(rules, tier, order_id, months)
    member = await member_for_update(uow, rules, member_id, now)  # one purchase at a time
    await refuse_if_erased(uow, member_id)
    if await uow.tiers.membership_order(unit, order_id) is not None:
        raise MembershipOrderUsed(unit, order_id)
    grant, renewed = member.buy_membership(rules, unit, tier, order_id, months, now)
    await uow.tiers.save([member])
    return Granted(grant, member.effective, renewed=renewed)


async def refund_membership(
    uow: AbstractUnitOfWork, member_id: str, unit: str, order_id: str, now: datetime
) -> Granted:
    """A refunded membership order ends the membership now (a refund of a membership already
    over changes nothing)."""
    rules = await ladder(uow)
    found = await uow.tiers.membership_order(unit, order_id)
    if found is None or found[0] != member_id:
        raise MembershipOrderNotFound(unit, order_id)
    member = await member_for_update(uow, rules, member_id, now)
    grant = await grant_of(uow, member_id, found[1])
    if member.refund_membership(rules, grant, order_id, now):
        await uow.tiers.save([member])
    return Granted(grant, member.effective)
