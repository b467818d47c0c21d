"""A merge undone, as the points service follows it from identity's MemberUnmerged: what is
left of the restored member's lots goes back with its unit, expiry and pending state, its
orders with them, nothing for settlement; the restored id earns and reads again."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_kit.settings import Settings
from loyalty_kit.timestamps import timestamp

from tests.points.conftest import ADMIN, Points, rid
from tests.points.test_spend import redeem
from tests.support.clock import Clock
from tests.support.events import publish
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def member_with_phone(points: Points) -> tuple[str, member_pb2.Identity]:
    identity = member_pb2.Identity(type="phone", value=f"136{uuid.uuid4().int % 10**8:08d}")
    response = await points.identity().RegisterMember(
        identity_pb.RegisterMemberRequest(
            request_id=rid(), unit="mall", channel=channel_pb2.CHANNEL_POS, identities=[identity]
        )
    )
    return str(response.member.name), identity


async def merge(points: Points, survivor: str, absorbed: str) -> None:
    await points.identity().MergeMembers(
        identity_pb.MergeMembersRequest(survivor=survivor, absorbed=absorbed, request_id=rid())
    )
    for _ in range(600):  # points learns the merge from identity's event (a busy machine: 30 s)
        try:
            await points.balance(absorbed)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.FAILED_PRECONDITION:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the merge never reached the points service")


async def unmerge(
    points: Points, survivor: str, restored: str, identity: member_pb2.Identity
) -> pb.Balance:
    await points.identity().UnmergeMembers(
        identity_pb.UnmergeMembersRequest(
            survivor=survivor,
            restored=restored,
            request_id=rid(),
            identities=[identity],
            reason="two people, one family phone",
        )
    )
    for _ in range(600):  # and the unmerge from MemberUnmerged
        try:
            return await points.balance(restored)
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.05)
    raise AssertionError("the unmerge never reached the points service")


def now_stamp(clock: Clock | None = None, **delta: float) -> Timestamp:
    return timestamp((clock() if clock else datetime.now(UTC)) + timedelta(**delta))


async def kinds(points: Points, member: str) -> list[tuple[int, int]]:
    statement = await points.as_().ListPostings(pb.ListPostingsRequest(member=member))
    return [(p.kind, p.points) for p in statement.postings]


async def test_unmerge_gives_back_what_is_left_of_the_restored_members_lots(
    points: Points, clock: Clock
) -> None:
    survivor, _ = await member_with_phone(points)
    restored, phone = await member_with_phone(points)
    await points.earn(restored, "mall", "120.00", occur="2025-06-01T10:00:00+08:00")
    stay = f"UNMERGE-{rid()[:8]}"
    await points.earn(restored, "hotel", "10.00", order_id=stay)  # 20 pending
    await points.earn(survivor, "mall", "50.00")
    await merge(points, survivor, restored)
    merged = await points.balance(survivor)
    assert (merged.available, merged.pending, merged.lifetime_earned) == (170, 20, 190)

    # The survivor spends 100: the oldest lot goes first, the one that came from the merge.
    await redeem(points, survivor, 100)
    start = now_stamp(clock)
    back = await unmerge(points, survivor, restored, phone)
    end = now_stamp(clock, seconds=0.5)

    assert (back.available, back.pending, back.lifetime_earned) == (20, 20, 140)
    kept = await points.balance(survivor)
    assert (kept.available, kept.pending, kept.lifetime_earned) == (50, 0, 50)
    assert (await kinds(points, restored))[0] == (pb.POSTING_KIND_UNMERGE_IN, 40)
    assert (await kinds(points, survivor))[0] == (pb.POSTING_KIND_UNMERGE_OUT, -40)

    # A move between members: nothing issued, redeemed or expired; the ledger nets to zero.
    report = await points.as_(ADMIN).GetSettlement(
        pb.GetSettlementRequest(start_time=start, end_time=end)
    )
    assert report.ledger_points == 0
    assert all(
        (u.points_issued, u.points_redeemed, u.points_expired) == (0, 0, 0) for u in report.units
    )

    # The restored id is a member again: it earns, its pending hotel order confirms to it,
    # and its refund takes from it, not from the survivor.
    await points.earn(restored, "cinema", "10.00")
    confirmed = await points.as_().ConfirmOrder(
        pb.ConfirmOrderRequest(member=restored, request_id=rid(), unit="hotel", order_id=stay)
    )
    assert confirmed.balance.available == 20 + 15 + 20
    failure = await fails(
        points.as_().ConfirmOrder(
            pb.ConfirmOrderRequest(member=survivor, request_id=rid(), unit="hotel", order_id=stay)
        )
    )
    assert failure.reason == "ORDER_NOT_FOUND"
    assert (await points.balance(survivor)).available == 50


async def test_a_redelivered_unmerge_changes_nothing(points: Points, settings: Settings) -> None:
    survivor, _ = await member_with_phone(points)
    restored, phone = await member_with_phone(points)
    await points.earn(restored, "mall", "30.00")
    await points.earn(survivor, "mall", "40.00")
    await merge(points, survivor, restored)
    await unmerge(points, survivor, restored, phone)
    replay = identity_events.MemberUnmerged(
        survivor_member_id=survivor.split("/")[1],
        restored_member_id=restored.split("/")[1],
        merged_at=now_stamp(minutes=-1),
        unmerged_at=now_stamp(),
    )
    await publish(settings, "identity", replay)  # the same fact again, under a new event id
    # A merge published after it is followed only once the replay was handled.
    marker_survivor, _ = await member_with_phone(points)
    marker_absorbed, _ = await member_with_phone(points)
    await points.earn(marker_absorbed, "mall", "1.00")  # known here: the wait is on points
    await merge(points, marker_survivor, marker_absorbed)
    assert (await points.balance(restored)).available == 30
    assert (await points.balance(survivor)).available == 40


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_merge_then_unmerge_with_nothing_between_leaves_both_balances_as_they_were(
    points: Points, seed: int
) -> None:
    """Property, over a few random histories: a merge undone at once is no change at all."""
    draw = random.Random(seed)
    survivor, _ = await member_with_phone(points)
    restored, phone = await member_with_phone(points)
    # The restored member earns at least once: with an account here, its balance answers
    # MEMBER_MERGED only once points has followed the merge (the helpers wait on that).
    for member, least in ((survivor, 0), (restored, 1)):
        for _ in range(draw.randint(least, 3)):
            unit = draw.choice(["mall", "hotel", "cinema", "estate"])
            amount = f"{draw.randint(1, 2000)}.{draw.randint(0, 99):02d}"
            year = draw.choice(["2025", "2026"])
            await points.earn(member, unit, amount, occur=f"{year}-03-01T10:00:00+08:00")
        if draw.random() < 0.5 and (await points.balance(member)).available:
            await redeem(points, member, 1)
    before = [await points.balance(m) for m in (survivor, restored)]
    await merge(points, survivor, restored)
    await unmerge(points, survivor, restored, phone)
    after = [await points.balance(m) for m in (survivor, restored)]
    for was, now in zip(before, after, strict=True):
        assert (now.available, now.pending, now.lifetime_earned, now.expiring_soon) == (
            was.available,
            was.pending,
            was.lifetime_earned,
            was.expiring_soon,
        )
