"""What identity's events do to tiers: merges, unmerges and erasure."""

from __future__ import annotations

from datetime import datetime

from loyalty_tiers.domain.member_tier import MemberTier
from loyalty_tiers.service_layer.activity import upgrade, window_activity
from loyalty_tiers.service_layer.members import member_for_update
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


async def on_member_merged(
    uow: AbstractUnitOfWork, survivor_id: str, absorbed_id: str, now: datetime
) -> None:
    """Both members' activity and grants count for the survivor, who keeps the higher tier (and
    its tier year); the combined activity may qualify for more at once."""
    rules = await uow.tiers.ladder()
    locked = await uow.tiers.lock_members([survivor_id, absorbed_id])
    await uow.tiers.move_member(absorbed_id, survivor_id)
    await uow.tiers.record_merge(
        absorbed_id, survivor_id, now, (locked.get(survivor_id), locked.get(absorbed_id))
    )
    if rules is None:
        return
    # Read again: the absorbed member's grants are the survivor's now.
    survivor = await member_for_update(uow, rules, survivor_id, now)
    survivor.absorb(rules, locked.get(absorbed_id), now)
    await uow.tiers.save([survivor])
    await upgrade(uow, rules, survivor, now)


async def on_member_unmerged(
    uow: AbstractUnitOfWork, survivor_id: str, restored_id: str, now: datetime
) -> None:
    """Undo a merge: the activity, grants and paid memberships that came from the restored
    member go back to it. Each member is then judged on its own record at once: it returns to
    the tier it held before the merge (its tier year too; one that ended meanwhile is judged at
    the next year end on its own activity) or to what its own activity supports now, if that
    is higher. The survivor never gains from an unmerge and drops at once when only the
    restored member's tier or activity held it up: the tier came from a mistake, so it does not
    wait for the tier year's end as a refund does. The restored member's tier is announced
    (TierChanged, reason "unmerged") even if unchanged, as the other services forgot it at
    the merge. A redelivery changes nothing."""
    if await uow.tiers.merged_into(restored_id) != survivor_id:
        return  # done already, or a merge this service never saw
    await uow.tiers.lock_members([survivor_id, restored_id])
    before = await uow.tiers.forget_merge(restored_id)
    assert before is not None
    await uow.tiers.give_back(survivor_id, restored_id)
    rules = await uow.tiers.ladder()
    if rules is None:
        return
    survivor_before, restored_before = before
    restored = restored_before or MemberTier.entry(restored_id, rules, now)
    restored.grants = (await uow.tiers.active_grants([restored_id])).get(restored_id, [])
    restored.rise_to(rules, await window_activity(uow, rules, restored, now), now)
    if survivor_before is not None:
        window = await window_activity(uow, rules, survivor_before, now)
        survivor_before.rise_to(rules, window, now)
    # Read again: the grants given back are the restored member's now.
    survivor = await member_for_update(uow, rules, survivor_id, now)
    restored.restore(rules, now)
    survivor.unmerge(rules, survivor_before, now)
    await uow.tiers.save([restored, survivor])


async def on_member_erased(uow: AbstractUnitOfWork, member_id: str, now: datetime) -> None:
    """The member's tier state holds no personal data and stays as it stood (history, grants,
    activity: ids and figures only), but it is judged no more and leaves the distribution;
    new grants and memberships are refused. Idempotent."""
    locked = await uow.tiers.lock_members([member_id])
    await uow.tiers.record_erasure(member_id, now)
    if (member := locked.get(member_id)) is not None:
        member.erase()
        await uow.tiers.save([member])
