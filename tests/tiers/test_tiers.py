"""Tiers from activity in every unit, through the real points service and NATS."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_devstack.demo import huayue_ladder
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.points.conftest import ADMIN, Points, rid
from tests.support.clients import As
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def tiers(tiers_service: RunningService) -> Any:
    async with grpc.aio.insecure_channel(tiers_service.target) as channel:
        stub = As(tiers_service_pb2_grpc.TiersServiceStub, channel, ADMIN)
        await stub.UpdateLadder(
            pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id="tests-ladder-v1")
        )
        yield stub


async def tier_of(tiers: Any, member: str, expected: str) -> pb.GetMemberTierResponse:
    for _ in range(200):
        found: pb.GetMemberTierResponse = await tiers.GetMemberTier(
            pb.GetMemberTierRequest(member=member)
        )
        if found.tier == expected:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{member} never became {expected}; is {found.tier}")


async def test_hotel_and_mall_spend_together_reach_gold_and_points_learn_it(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    await points.earn(member, "hotel", "12000.00")
    silver = await tier_of(tiers, member, "silver")
    assert silver.next_tier == "gold"
    assert [(p.current, p.required, p.remaining) for p in silver.progress] == [
        ("12000.00", "20000", "8000.00")
    ]
    await points.earn(member, "mall", "9000.00")
    gold = await tier_of(tiers, member, "gold")
    assert gold.HasField("tier_year_end") and gold.next_tier == "platinum"

    # The points service learns the tier from TierChanged and applies gold's x1.25.
    for _ in range(200):
        if (await points.balance(member)).tier == "gold":
            break
        await asyncio.sleep(0.05)
    stay = await points.earn(member, "hotel", "1234.56")
    assert stay.posting.points == 3086

    history = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=member))
    assert [(c.from_tier, c.to_tier, c.reason) for c in history.changes] == [
        ("silver", "gold", "qualified"),
        ("basic", "silver", "qualified"),
    ]


async def test_a_refund_does_not_downgrade_on_the_spot(points: Points, tiers: Any) -> None:
    member = await points.member()
    await points.earn(member, "mall", "6000.00", order_id="T-1")
    await tier_of(tiers, member, "silver")
    await points.as_().ReverseEarn(
        points_pb.ReverseEarnRequest(member=member, request_id=rid(), unit="mall", order_id="T-1")
    )
    await asyncio.sleep(0.5)  # the PointsReversed event has been processed by now
    still = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
    assert still.tier == "silver"
    assert [p.current for p in still.progress] == ["0.00"]  # but it counts: no progress left


async def test_a_ladder_whose_thresholds_do_not_increase_is_refused(tiers: Any) -> None:
    ladder = huayue_ladder()
    ladder.tiers[3].thresholds[0].value = "15000"  # platinum below gold
    failure = await fails(
        tiers.UpdateLadder(pb.UpdateLadderRequest(ladder=ladder, request_id=uuid.uuid4().hex))
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == ["ladder.tiers[3].thresholds"]
    ladder = huayue_ladder()
    ladder.tiers[1].thresholds[0].value = "lots"
    failure = await fails(
        tiers.UpdateLadder(pb.UpdateLadderRequest(ladder=ladder, request_id=uuid.uuid4().hex))
    )
    assert failure.fields == ["ladder.tiers[1].thresholds[0].value"]


async def test_a_tier_year_with_enough_activity_keeps_the_tier_and_one_without_drops_a_level(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    await points.earn(member, "mall", "21000.00")
    gold = await tier_of(tiers, member, "gold")
    year_end = gold.tier_year_end.ToDatetime(tzinfo=UTC)
    # The tier year starts at the upgrade: what counts for retention is spent after it.
    await points.earn(member, "hotel", "5000.00")  # spend counts in CNY, whatever the unit
    await points.earn(member, "mall", "5000.00")
    for _ in range(200):
        current = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
        if current.progress and current.progress[0].current == "31000.00":
            break
        await asyncio.sleep(0.05)

    first = await tiers.RunYearEnd(
        pb.RunYearEndRequest(as_of=timestamp(year_end + timedelta(days=1)))
    )
    assert first.judged >= 1
    kept = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
    assert kept.tier == "gold"  # 10,000 spent in the tier year: half of gold's 20,000
    again = await tiers.RunYearEnd(
        pb.RunYearEndRequest(as_of=timestamp(year_end + timedelta(days=1)))
    )
    assert again.judged == 0  # idempotent: that year is judged

    second_end = kept.tier_year_end.ToDatetime(tzinfo=UTC)
    second = await tiers.RunYearEnd(
        pb.RunYearEndRequest(as_of=timestamp(second_end + timedelta(days=1)))
    )
    assert second.downgraded >= 1
    dropped = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
    assert dropped.tier == "silver"  # nothing spent in the second year: one level down
    history = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=member))
    assert [(c.from_tier, c.to_tier, c.reason) for c in history.changes][:2] == [
        ("gold", "silver", "downgraded"),
        ("gold", "gold", "retained"),
    ]
    for _ in range(200):  # points learns it from TierChanged
        if (await points.balance(member)).tier == "silver":
            break
        await asyncio.sleep(0.05)
    assert (await points.balance(member)).tier == "silver"


async def test_a_merge_combines_activity_and_keeps_the_higher_tier(
    points: Points, tiers: Any
) -> None:
    from loyalty.identity.v1 import identity_service_pb2 as identity_pb

    silver_member, other = await points.member(), await points.member()
    await points.earn(silver_member, "mall", "6000.00")
    await points.earn(other, "mall", "15000.00")
    await tier_of(tiers, silver_member, "silver")
    await tier_of(tiers, other, "silver")
    await points.identity().MergeMembers(
        identity_pb.MergeMembersRequest(survivor=silver_member, absorbed=other, request_id=rid())
    )
    # 6,000 + 15,000 in the window: together they reach gold.
    merged = await tier_of(tiers, silver_member, "gold")
    assert merged.next_tier == "platinum"
