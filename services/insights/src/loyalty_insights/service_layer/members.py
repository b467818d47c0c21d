"""What identity's merges, unmerges and erasures do to the facts."""

from __future__ import annotations

from datetime import datetime

from loyalty_insights.service_layer.refresh import recompute
from loyalty_insights.service_layer.uow import InsightsUnitOfWork


async def on_member_merged(
    uow: InsightsUnitOfWork, survivor_id: str, absorbed_id: str, now: datetime
) -> None:
    """The absorbed member's facts count for the survivor from now on (and those that arrive
    under its ID later too): figures per member read them through the merge. Its badges are
    the survivor's (engagement moves them)."""
    await uow.facts.record_merge(survivor_id, absorbed_id, now)
    await uow.facts.move_badges(absorbed_id, survivor_id)
    await recompute(uow, [survivor_id, absorbed_id], now)


async def on_member_unmerged(
    uow: InsightsUnitOfWork, survivor_id: str, restored_id: str, now: datetime
) -> None:
    """The restored member's own facts are its own again. What the survivor did after the
    merge stays the survivor's (the events name the survivor for it)."""
    await uow.facts.forget_merge(survivor_id, restored_id)
    await recompute(uow, [survivor_id, restored_id], now)


async def on_member_erased(uow: InsightsUnitOfWork, member_id: str, now: datetime) -> None:
    await uow.facts.record_erasure(member_id, now)
    await recompute(uow, [member_id], now)
