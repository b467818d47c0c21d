"""A merge undone, as the tiers service follows it: the restored member's activity goes back,
each member is judged on its own record at once, and both tiers are announced as usual."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from loyalty.tiers.v1 import tiers_service_pb2 as pb

from tests.points.conftest import Points
from tests.points.test_unmerge import member_with_phone, merge, unmerge
from tests.tiers.conftest import points_learn, tier_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def readable_tier(tiers: Any, member: str, expected: str) -> pb.GetMemberTierResponse:
    """The restored member's tier once tiers has followed the unmerge and it is `expected`."""
    for _ in range(600):
        try:
            found: pb.GetMemberTierResponse = await tiers.GetMemberTier(
                pb.GetMemberTierRequest(member=member)
            )
            if found.tier == expected:
                return found
        except grpc.aio.AioRpcError:
            pass  # MEMBER_MERGED until the unmerge arrives
        await asyncio.sleep(0.05)
    raise AssertionError(f"{member} never read as {expected}")


async def test_an_unmerge_gives_the_activity_back_and_the_survivor_drops_at_once(
    points: Points, tiers: Any
) -> None:
    survivor, _ = await member_with_phone(points)
    restored, phone = await member_with_phone(points)
    await points.earn(survivor, "mall", "6000.00")
    await points.earn(restored, "mall", "15000.00")
    await tier_of(tiers, survivor, "silver")
    await tier_of(tiers, restored, "silver")
    await merge(points, survivor, restored)
    await tier_of(tiers, survivor, "gold")  # 21,000 together

    await unmerge(points, survivor, restored, phone)
    # Each on its own record: 15,000 and 6,000 are silver; the survivor does not keep gold
    # until its tier year ends, as gold came only from the other member's spend.
    await readable_tier(tiers, restored, "silver")
    await tier_of(tiers, survivor, "silver")
    history = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=survivor))
    assert [(h.from_tier, h.to_tier, h.reason) for h in history.changes][:2] == [
        ("gold", "silver", "unmerged"),
        ("silver", "gold", "qualified"),  # the combined spend, at the merge
    ]
    restored_history = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=restored))
    assert restored_history.changes[0].reason == "unmerged"
    await points_learn(points, survivor, "silver")

    # The restored member's own activity counts for it again: 15,000 + 6,000 reaches gold.
    await points.earn(restored, "cinema", "6000.00")
    await tier_of(tiers, restored, "gold")
