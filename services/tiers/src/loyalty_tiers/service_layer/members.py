"""Finding a member's tier for a use case, and the members no use case may change."""

from __future__ import annotations

from datetime import datetime

from loyalty_kit.errors import MemberNotActive

from loyalty_tiers.domain.ladder import Ladder
from loyalty_tiers.domain.member_tier import MemberTier
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


async def member_for_update(
    uow: AbstractUnitOfWork, rules: Ladder, member_id: str, now: datetime
) -> MemberTier:
    """The member's tier, locked for this unit of work; a member first seen now starts at the
    entry tier. An absorbed member's id is refused."""
    member = await uow.tiers.member_tier(member_id, lock=True)
    if member is None:
        await refuse_if_merged(uow, member_id)
    return member or await uow.tiers.ensure_member(member_id, rules.tiers[0].code, now)


async def member_as_it_stands(
    uow: AbstractUnitOfWork, rules: Ladder, member_id: str, now: datetime
) -> MemberTier:
    """The member's tier for a read (the entry tier for a member never seen)."""
    member = await uow.tiers.member_tier(member_id)
    if member is None:
        await refuse_if_merged(uow, member_id)
        member = MemberTier.entry(member_id, rules, now)
        member.grants = (await uow.tiers.active_grants([member_id])).get(member_id, [])
    return member


async def refuse_if_merged(uow: AbstractUnitOfWork, member_id: str) -> None:
    """An absorbed member's id is refused on every read and write, naming the survivor
    (MEMBER_MERGED with merged_into), as every service does. Asked only where the member has
    no tier row: a merge deletes the absorbed member's."""
    survivor = await uow.tiers.merged_into(member_id)
    if survivor is not None:
        raise MemberNotActive(member_id, "merged", survivor)


async def refuse_if_erased(uow: AbstractUnitOfWork, member_id: str) -> None:
    """An erased member is given nothing new (a grant, a membership): FAILED_PRECONDITION /
    MEMBER_ERASED, as points and benefits answer. Reads still answer, and what undoes
    something (a revocation, a membership refund) still goes through, as a refund does at
    points."""
    if await uow.tiers.erased(member_id):
        raise MemberNotActive(member_id, "erased")
