"""Tiers from activity in every unit, through the real points service and NATS."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty_devstack.demo import huayue_ladder
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings
from loyalty_kit.timestamps import timestamp
from loyalty_tiers.bootstrap import Tiers

from tests.points.conftest import Points, rid
from tests.support.events import publish, relay_held, unpublished
from tests.support.rpc import fails
from tests.tiers.conftest import points_learn, tier_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_hotel_and_mall_spend_together_reach_gold_and_points_learn_it(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    await points.earn(member, "hotel", "12000.00")
    silver = await tier_of(tiers, member, "silver")
    assert silver.next_tier == "gold"
    assert [(p.current, p.required, p.remaining) for p in silver.progress] == [
        ("12000.00", "20000.00", "8000.00")
    ]
    await points.earn(member, "mall", "9000.00")
    gold = await tier_of(tiers, member, "gold")
    assert gold.HasField("tier_year_end") and gold.next_tier == "platinum"

    # The points service learns the tier from TierChanged and applies gold's x1.25.
    await points_learn(points, member, "gold")
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
    # The refund counts once its PointsReversed arrives (no progress left), but the tier stays.
    for _ in range(400):
        still = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
        if [p.current for p in still.progress] == ["0.00"]:
            break
        await asyncio.sleep(0.05)
    assert [p.current for p in still.progress] == ["0.00"]
    assert still.tier == "silver"


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


async def test_the_ladder_names_its_base_currency_and_spend_thresholds_have_its_digits(
    tiers: Any,
) -> None:
    found = (await tiers.GetLadder(pb.GetLadderRequest())).ladder
    assert found.base_currency_code == "CNY"
    assert [t.thresholds[0].value for t in found.tiers[1:]] == [
        "5000.00",
        "20000.00",
        "80000.00",
        "300000.00",
    ]
    assert found.tiers[1].retention_thresholds[0].value == "2500.00"
    # A spend threshold is an amount of the base currency: no more digits than it has.
    ladder = huayue_ladder()
    ladder.base_currency_code = "JPY"
    ladder.tiers[1].thresholds[0].value = "5000.50"
    failure = await fails(
        tiers.UpdateLadder(pb.UpdateLadderRequest(ladder=ladder, request_id=uuid.uuid4().hex))
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == ["ladder.tiers[1].thresholds[0].value"]
    ladder = huayue_ladder()
    ladder.base_currency_code = "RMB"
    failure = await fails(
        tiers.UpdateLadder(pb.UpdateLadderRequest(ladder=ladder, request_id=uuid.uuid4().hex))
    )
    assert failure.fields == ["ladder.base_currency_code"]


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


async def test_an_absorbed_member_id_is_refused_naming_the_survivor_by_every_read_and_write(
    points: Points, tiers: Any
) -> None:
    """One rule for points and tiers: reads and writes of an absorbed id answer
    FAILED_PRECONDITION / MEMBER_MERGED with merged_into (never a zero balance or basic)."""
    from loyalty.identity.v1 import identity_service_pb2 as identity_pb

    survivor, absorbed = await points.member(), await points.member()
    await points.earn(absorbed, "mall", "6000.00")
    await tier_of(tiers, absorbed, "silver")
    await points.identity().MergeMembers(
        identity_pb.MergeMembersRequest(survivor=survivor, absorbed=absorbed, request_id=rid())
    )
    await tier_of(tiers, survivor, "silver")  # tiers has applied the merge
    for _ in range(200):  # and points has
        if (await points.balance(survivor)).available == 6000:
            break
        await asyncio.sleep(0.05)
    calls = {
        "GetBalance": points.as_().GetBalance(points_pb.GetBalanceRequest(member=absorbed)),
        "ListPostings": points.as_().ListPostings(points_pb.ListPostingsRequest(member=absorbed)),
        "EarnPoints": points.earn(absorbed, "mall", "1.00"),
        "GetMemberTier": tiers.GetMemberTier(pb.GetMemberTierRequest(member=absorbed)),
        "PreviewMemberTier": tiers.PreviewMemberTier(
            pb.PreviewMemberTierRequest(
                member=absorbed,
                activities=[pb.ExtraActivity(unit="mall", qualifying_spend="100.00")],
            )
        ),
        "ListTierHistory": tiers.ListTierHistory(pb.ListTierHistoryRequest(member=absorbed)),
        "ListTierGrants": tiers.ListTierGrants(pb.ListTierGrantsRequest(member=absorbed)),
        "CreateTierGrant": tiers.CreateTierGrant(
            pb.CreateTierGrantRequest(
                member=absorbed,
                request_id=rid(),
                tier_grant=pb.TierGrant(
                    tier="gold",
                    kind=pb.GRANT_KIND_GIFT,
                    reason="vip",
                    end_time=timestamp(datetime.now(UTC) + timedelta(days=30)),
                ),
            )
        ),
    }
    for name, call in calls.items():
        failure = await fails(call)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "MEMBER_MERGED",
        ), name
        assert failure.metadata["merged_into"] == survivor.split("/")[1], name


async def test_an_erased_member_is_given_nothing_new_and_leaves_the_distribution(
    points: Points, tiers: Any
) -> None:
    """As points and benefits answer: FAILED_PRECONDITION / MEMBER_ERASED for a grant or a
    membership; reads answer with the tier as it stood, which is judged no more."""
    from loyalty.identity.v1 import identity_service_pb2 as identity_pb

    def counts(response: pb.GetTierDistributionResponse) -> dict[str, int]:
        return {c.tier: c.members for c in response.counts}

    member = await points.member()
    await points.earn(member, "mall", "6000.00")
    assert (await tier_of(tiers, member, "silver")).HasField("tier_year_end")
    before = counts(await tiers.GetTierDistribution(pb.GetTierDistributionRequest()))
    await points.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=member, request_id=rid(), reason="member request")
    )
    for _ in range(200):  # tiers learns it from identity's event
        erased = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
        if not erased.HasField("tier_year_end"):
            break
        await asyncio.sleep(0.05)
    assert erased.tier == "silver" and not erased.HasField("tier_year_end")
    after = counts(await tiers.GetTierDistribution(pb.GetTierDistributionRequest()))
    assert after["silver"] == before["silver"] - 1
    calls = {
        "CreateTierGrant": tiers.CreateTierGrant(
            pb.CreateTierGrantRequest(
                member=member,
                request_id=rid(),
                tier_grant=pb.TierGrant(
                    tier="gold",
                    kind=pb.GRANT_KIND_GIFT,
                    reason="vip",
                    end_time=timestamp(datetime.now(UTC) + timedelta(days=30)),
                ),
            )
        ),
        "PurchaseMembership": tiers.PurchaseMembership(
            pb.PurchaseMembershipRequest(
                member=member,
                unit="hotel",
                tier="gold",
                order_id=f"MS-{uuid.uuid4().hex[:8]}",
                months=12,
                request_id=rid(),
            )
        ),
    }
    for name, call in calls.items():
        failure = await fails(call)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "MEMBER_ERASED",
        ), name
        assert failure.metadata == {"member_id": member.split("/")[1], "state": "erased"}, name
    history = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=member))
    assert [c.to_tier for c in history.changes] == ["silver"]


async def test_preview_shows_what_extra_activity_would_do_and_changes_nothing(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    stay = await points.earn(member, "hotel", "12000.00")
    await tier_of(tiers, member, "silver")
    # The same stay named by its posting: counted already, so not added twice.
    again = await tiers.PreviewMemberTier(
        pb.PreviewMemberTierRequest(
            member=member,
            activities=[
                pb.ExtraActivity(
                    unit="hotel", qualifying_spend="12000", posting_id=stay.posting.posting_id
                )
            ],
        )
    )
    assert (again.tier, again.upgrade) == ("silver", False)
    preview = await tiers.PreviewMemberTier(
        pb.PreviewMemberTierRequest(
            member=member,
            activities=[pb.ExtraActivity(unit="mall", qualifying_spend="9000", visits=1)],
        )
    )
    assert (preview.tier, preview.upgrade, preview.next_tier) == ("gold", True, "platinum")
    assert [(p.current, p.remaining) for p in preview.progress] == [("21000.00", "59000.00")]
    small = await tiers.PreviewMemberTier(
        pb.PreviewMemberTierRequest(
            member=member, activities=[pb.ExtraActivity(unit="mall", qualifying_spend="100")]
        )
    )
    assert (small.tier, small.upgrade) == ("silver", False)
    # The same 9,000 spent 13 months ago lies outside the 12-month window: it counts for
    # nothing, as it would when its points event arrives.
    long_ago = await tiers.PreviewMemberTier(
        pb.PreviewMemberTierRequest(
            member=member,
            activities=[
                pb.ExtraActivity(
                    unit="mall",
                    qualifying_spend="9000",
                    occur_time=timestamp(datetime.now(UTC) - timedelta(days=400)),
                )
            ],
        )
    )
    assert (long_ago.tier, long_ago.upgrade) == ("silver", False)
    assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))).tier == "silver"
    bad = await fails(
        tiers.PreviewMemberTier(
            pb.PreviewMemberTierRequest(
                member=member,
                activities=[pb.ExtraActivity(qualifying_spend="lots", points=-1)],
            )
        )
    )
    assert sorted(bad.fields) == ["activities[0].points", "activities[0].qualifying_spend"]
    # Spend is an amount of the ladder's base currency (CNY): a third decimal is refused.
    precise = await fails(
        tiers.PreviewMemberTier(
            pb.PreviewMemberTierRequest(
                member=member,
                activities=[
                    pb.ExtraActivity(unit="mall", qualifying_spend="100.00"),
                    pb.ExtraActivity(unit="mall", qualifying_spend="100.005"),
                ],
            )
        )
    )
    assert precise.code == grpc.StatusCode.INVALID_ARGUMENT
    assert precise.fields == ["activities[1].qualifying_spend"]


async def test_the_distribution_counts_members_per_tier(points: Points, tiers: Any) -> None:
    def counts(response: pb.GetTierDistributionResponse) -> dict[str, int]:
        return {c.tier: c.members for c in response.counts}

    before = counts(await tiers.GetTierDistribution(pb.GetTierDistributionRequest()))
    assert list(before) == ["basic", "silver", "gold", "platinum", "diamond"]
    member = await points.member()
    await points.earn(member, "mall", "25000.00")
    await tier_of(tiers, member, "gold")
    after = counts(await tiers.GetTierDistribution(pb.GetTierDistributionRequest()))
    assert after["gold"] == before["gold"] + 1
    assert after["silver"] == before["silver"] and after["basic"] == before["basic"]


async def test_progress_toward_keeping_the_tier_counts_the_tier_year(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    await points.earn(member, "mall", "21000.00")
    await tier_of(tiers, member, "gold")
    await points.earn(member, "cinema", "3000.00")
    for _ in range(200):
        found = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
        if found.retention_progress and found.retention_progress[0].current != "0.00":
            break
        await asyncio.sleep(0.05)
    # The purchase that earned gold came before the tier year; the cinema's 3,000 counts.
    assert [(p.current, p.required, p.remaining) for p in found.retention_progress] == [
        ("3000.00", "10000.00", "7000.00")
    ]


async def test_duplicate_late_and_out_of_order_events_count_once(
    points: Points, tiers: Any, settings: Settings
) -> None:
    """Real postings' events delivered as a relay restarted mid-batch or a slow consumer would:
    the refund of P2 before P2 itself, P1 twice, and then all of them again as the points
    service publishes them; each posting counts once, whatever the order."""
    member = await points.member()
    now = datetime.now(UTC)

    def days_ago(days: int) -> str:
        return (now - timedelta(days=days)).isoformat()

    async with relay_held(settings, "points") as points_db:
        await points.earn(member, "mall", "6000.00", occur=days_ago(10))  # P1
        p2 = f"T-{uuid.uuid4().hex[:8]}"
        await points.earn(member, "mall", "3000.00", order_id=p2, occur=days_ago(2))
        await points.as_().ReverseEarn(
            points_pb.ReverseEarnRequest(member=member, request_id=rid(), unit="mall", order_id=p2)
        )
        await points.earn(member, "mall", "50000.00", occur=days_ago(400))  # outside the window
        p1, p2_earned, r2, p0 = await unpublished(
            points_db,
            (points_events.PointsEarned, points_events.PointsReversed),
            member.removeprefix("members/"),
        )
        assert isinstance(r2, points_events.PointsReversed)
        for event in (p1, p1, r2, p2_earned, p0):  # P1 again as another event; R2 before P2
            await publish(settings, "points", event)
    # The relay now publishes all four as well, and then the marker: the last one.
    await points.earn(member, "mall", "1.00")
    for _ in range(200):
        found = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
        if found.progress and found.progress[0].current == "6001.00":
            break
        await asyncio.sleep(0.05)
    assert found.tier == "silver"
    assert [(p.current, p.required) for p in found.progress] == [("6001.00", "20000.00")]
    history = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=member))
    assert [(c.from_tier, c.to_tier) for c in history.changes] == [("basic", "silver")]


async def test_a_growth_value_ladder_weighs_the_hotel_double(points: Points, tiers: Any) -> None:
    """A ladder on growth value (成长值) with the hotel weighted 2: CNY 3,000 at the hotel is
    6,000 growth, enough for silver; the same at the mall is not."""
    ladder = huayue_ladder()
    for tier in ladder.tiers[1:]:
        for rule in (*tier.thresholds, *tier.retention_thresholds):
            rule.metric = pb.METRIC_GROWTH_VALUE
    ladder.growth_weights["hotel"] = "2"
    ladder.growth_weights["estate"] = "0.1"
    published = await tiers.UpdateLadder(
        pb.UpdateLadderRequest(ladder=ladder, request_id=uuid.uuid4().hex)
    )
    try:
        assert published.ladder.growth_weights["hotel"] == "2"
        at_hotel, at_mall = await points.member(), await points.member()
        await points.earn(at_hotel, "hotel", "3000.00")
        await points.earn(at_mall, "mall", "3000.00")
        silver = await tier_of(tiers, at_hotel, "silver")
        assert silver.progress[0].metric == pb.METRIC_GROWTH_VALUE
        assert silver.progress[0].current == "6000.00"
        for _ in range(200):  # the mall's event counted, and it is not enough
            mall = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=at_mall))
            if mall.progress[0].current == "3000.00":
                break
            await asyncio.sleep(0.05)
        assert (mall.tier, mall.progress[0].current) == ("basic", "3000.00")
        # Estate weighs 0.1: CNY 1,234.56 is 123.456 growth. Shown with the currency's digits,
        # what the member has is rounded down and what is missing up, so they add up.
        at_estate = await points.member()
        await points.earn(at_estate, "estate", "1234.56")
        for _ in range(200):
            estate = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=at_estate))
            if estate.progress[0].current != "0.00":
                break
            await asyncio.sleep(0.05)
        assert [(p.current, p.required, p.remaining) for p in estate.progress] == [
            ("123.45", "5000.00", "4876.55")
        ]
    finally:
        await tiers.UpdateLadder(
            pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id=uuid.uuid4().hex)
        )


async def test_the_ladder_read_is_the_one_committed_after_a_version_rolled_back(
    tiers: Any, tiers_service: RunningService
) -> None:
    """The service keeps the ladder it read, parsed, for as long as it is the latest: a version
    read by a transaction that rolled back, then written again by another, is read anew."""
    root: Tiers = tiers_service.root
    async with root.uow() as uow:
        current = await uow.tiers.ladder()
        assert current is not None
        other = dataclasses.replace(current, grace_days=current.grace_days + 7)
        await uow.tiers.add_ladder(other)
        read = await uow.tiers.ladder()
        assert read is not None and read.grace_days == current.grace_days + 7
        # left without a commit: rolled back
    async with root.uow() as uow:
        version = await uow.tiers.add_ladder(dataclasses.replace(current))
        await uow.commit()
    async with root.uow(read_only=True) as uow:
        found = await uow.tiers.ladder()
    assert found is not None
    assert (found.version, found.grace_days) == (version, current.grace_days)
    assert version == read.version  # the same number as the version rolled back
