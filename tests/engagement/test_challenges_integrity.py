"""Challenges, badges and leaderboards under refunds, merges and erasure, over a real channel
against the running engagement service, from real events on the bus (points' purchases and
refunds, identity's merges and erasures)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from loyalty.common.v1 import money_pb2
from loyalty.engagement.v1 import challenges_pb2 as pb
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.points.v1 import events_pb2 as points_events
from loyalty_kit.timestamps import timestamp

from tests.engagement.conftest import Engagement, rid, until
from tests.engagement.test_challenges import DESK, badges, challenges, progress_in, purchase, units
from tests.support.events import publish


def refund(bought: points_events.PointsEarned, amount: str) -> points_events.PointsReversed:
    return points_events.PointsReversed(
        member_id=bought.member_id,
        posting_id=uuid.uuid4().hex,
        earn_posting_id=bought.posting_id,
        unit=bought.unit,
        order_id=bought.order_id,
        qualifying_spend_base=money_pb2.Money(currency_code="CNY", amount=amount),
        points=1,
        occurred_at=timestamp(datetime.now(UTC)),
    )


async def challenge(engagement: Engagement, goal: pb.Goal, reward: pb.ChallengeReward) -> Any:
    return (
        await challenges(engagement).CreateChallenge(
            pb.CreateChallengeRequest(
                request_id=rid(),
                challenge=pb.Challenge(
                    display_name=f"Challenge {uuid.uuid4().hex[:6]}",
                    goal=goal,
                    window=pb.Window(kind=pb.WINDOW_KIND_MONTH),
                    reward=reward,
                ),
            )
        )
    ).challenge


async def spend_board(engagement: Engagement, unit: str) -> Any:
    return (
        await challenges(engagement).CreateLeaderboard(
            pb.CreateLeaderboardRequest(
                request_id=rid(),
                leaderboard=pb.Leaderboard(
                    display_name=f"Spend at {unit}",
                    metric=pb.LEADERBOARD_METRIC_SPEND,
                    scope_unit=unit,
                    period=pb.WINDOW_KIND_MONTH,
                ),
            )
        )
    ).leaderboard


async def score(engagement: Engagement, board: Any, member_id: str) -> int:
    rank = await challenges(engagement).GetMemberRank(
        pb.GetMemberRankRequest(leaderboard=board.name, member_id=member_id)
    )
    return int(rank.standing.score)


async def value_of(engagement: Engagement, member_id: str, name: str) -> int:
    found = await progress_in(engagement, member_id, name)
    return int(found.value) if found else 0


async def test_a_refund_takes_its_spend_back_once_and_a_completion_stands(
    engagement: Engagement,
) -> None:
    mall = units()[0]
    spend = await challenge(
        engagement,
        pb.Goal(kind=pb.GOAL_KIND_SPEND, target=300, unit=mall),
        pb.ChallengeReward(points=500, funding_unit="group"),
    )
    board = await spend_board(engagement, mall)
    member_id = await engagement.member()
    first, second = purchase(member_id, mall), purchase(member_id, mall)  # 120 each
    for bought in (first, second):
        await publish(engagement.settings, "points", bought)
    await until(lambda: value_of(engagement, member_id, spend.name), lambda v: v == 240)

    partly = refund(first, "50.00")
    event_id = await publish(engagement.settings, "points", partly)
    await publish(engagement.settings, "points", partly, event_id, msg_id=rid())  # redelivered
    await publish(engagement.settings, "points", partly)  # replayed under another event ID
    await publish(engagement.settings, "points", refund(second, "120.00"))
    await until(lambda: value_of(engagement, member_id, spend.name), lambda v: v == 70)
    assert await score(engagement, board, member_id) == 70

    # A refund before its purchase: the purchase counts net of it (nothing).
    third = purchase(member_id, mall)
    await publish(engagement.settings, "points", refund(third, "120.00"))
    await until(lambda: value_of(engagement, member_id, spend.name), lambda v: v == 70)
    await publish(engagement.settings, "points", third)
    fourth, fifth = purchase(member_id, mall), purchase(member_id, mall)
    for bought in (fourth, fifth):
        await publish(engagement.settings, "points", bought)
    done = await until(
        lambda: progress_in(engagement, member_id, spend.name), lambda p: p and p.completed
    )
    assert done.value == 310
    await until(lambda: score(engagement, board, member_id), lambda s: s == 310)

    # After the completion a refund takes nothing back: the reward is kept, paid once.
    await publish(engagement.settings, "points", refund(fourth, "120.00"))
    await until(lambda: score(engagement, board, member_id), lambda s: s == 190)
    after = await progress_in(engagement, member_id, spend.name)
    assert (after.value, after.completed) == (310, True)
    postings = await until(lambda: engagement.postings(member_id), lambda p: bool(p))
    assert [p.points for p in postings] == [500]


async def test_a_refunded_unit_no_longer_counts_towards_distinct_units(
    engagement: Engagement,
) -> None:
    at = units()
    explorer = await challenge(
        engagement,
        pb.Goal(kind=pb.GOAL_KIND_DISTINCT_UNITS, target=3, units=list(at)),
        pb.ChallengeReward(points=1000, funding_unit="group"),
    )
    member_id = await engagement.member()
    mall, hotel = purchase(member_id, at[0]), purchase(member_id, at[1])
    for bought in (mall, hotel):
        await publish(engagement.settings, "points", bought)
    await until(lambda: value_of(engagement, member_id, explorer.name), lambda v: v == 2)
    await publish(engagement.settings, "points", refund(hotel, "120.00"))
    shown = await until(
        lambda: progress_in(engagement, member_id, explorer.name), lambda p: p.value == 1
    )
    assert list(shown.units) == [at[0]]
    await publish(engagement.settings, "points", purchase(member_id, at[2]))
    await until(lambda: value_of(engagement, member_id, explorer.name), lambda v: v == 2)
    assert await engagement.postings(member_id) == []


async def two_units_and_one_reward(engagement: Engagement, member_id: str, name: str) -> None:
    await until(lambda: value_of(engagement, member_id, name), lambda v: v == 2)
    await until(lambda: engagement.postings(member_id), lambda p: len(p) == 1)


async def test_a_merge_combines_progress_badges_and_standings_paying_once(
    engagement: Engagement,
) -> None:
    at = units()
    explorer = await challenge(
        engagement,
        pb.Goal(kind=pb.GOAL_KIND_DISTINCT_UNITS, target=3, units=list(at)),
        pb.ChallengeReward(points=1000, funding_unit="group"),
    )
    badge = f"first-{uuid.uuid4().hex[:6]}"
    first = await challenge(
        engagement,
        pb.Goal(kind=pb.GOAL_KIND_PURCHASES, target=1, unit=at[1]),
        pb.ChallengeReward(points=10, funding_unit="group", badge=badge),
    )
    board = await spend_board(engagement, at[1])
    survivor, absorbed = await engagement.member(), await engagement.member()
    await publish(engagement.settings, "points", purchase(survivor, at[0]))
    await publish(engagement.settings, "points", purchase(survivor, at[1]))
    for unit in (at[1], at[2]):
        await publish(engagement.settings, "points", purchase(absorbed, unit))
    await challenges(engagement, DESK).GrantBadge(
        pb.GrantBadgeRequest(
            member=f"members/{absorbed}", badge="founder", reason="opening", request_id=rid()
        )
    )
    for member_id in (survivor, absorbed):
        await two_units_and_one_reward(engagement, member_id, explorer.name)

    merged = identity_events.MemberMerged(
        survivor_member_id=survivor,
        absorbed_member_id=absorbed,
        merged_at=timestamp(datetime.now(UTC)),
    )
    event_id = await publish(engagement.settings, "identity", merged)
    await publish(engagement.settings, "identity", merged, event_id, msg_id=rid())
    await publish(engagement.settings, "identity", merged)

    done = await until(
        lambda: progress_in(engagement, survivor, explorer.name), lambda p: p and p.completed
    )
    assert sorted(done.units) == sorted(at)
    # Points moves the absorbed member's balance itself ("merge of ..."; its ledger is closed
    # to reads now); the challenges' rewards are the postings named after them: each paid
    # once, the combined one to the survivor.
    names = (explorer.display_name, first.display_name)

    async def rewards(member_id: str) -> list[int]:
        return sorted(p.points for p in await engagement.postings(member_id) if p.reason in names)

    assert await until(lambda: rewards(survivor), lambda r: len(r) >= 2) == [10, 1000]
    assert sorted(b.badge for b in await badges(engagement, survivor)) == sorted([badge, "founder"])
    assert await badges(engagement, absorbed) == []
    assert await score(engagement, board, survivor) == 240
    assert await score(engagement, board, absorbed) == 0
    # A purchase of the absorbed member still in flight at the merge counts for the survivor.
    await publish(engagement.settings, "points", purchase(absorbed, at[1]))
    await until(lambda: score(engagement, board, survivor), lambda s: s == 360)
    assert await score(engagement, board, absorbed) == 0
    assert await progress_in(engagement, absorbed, first.name) is not None  # running: shown
    assert await value_of(engagement, absorbed, explorer.name) == 0


async def test_an_erased_members_challenges_badges_and_standings_are_forgotten(
    engagement: Engagement,
) -> None:
    mall = units()[0]
    spend = await challenge(
        engagement,
        pb.Goal(kind=pb.GOAL_KIND_SPEND, target=1000, unit=mall),
        pb.ChallengeReward(points=5, funding_unit="group", badge="spender"),
    )
    board = await spend_board(engagement, mall)
    member_id = await engagement.member()
    bought = purchase(member_id, mall)
    await publish(engagement.settings, "points", bought)
    await publish(engagement.settings, "points", refund(bought, "20.00"))
    await until(lambda: value_of(engagement, member_id, spend.name), lambda v: v == 100)
    await challenges(engagement, DESK).GrantBadge(
        pb.GrantBadgeRequest(
            member=f"members/{member_id}", badge="founder", reason="opening", request_id=rid()
        )
    )
    erased = identity_events.MemberErased(
        member_id=member_id, erased_at=timestamp(datetime.now(UTC))
    )
    await publish(engagement.settings, "identity", erased)
    await until(lambda: badges(engagement, member_id), lambda b: b == [])
    assert await value_of(engagement, member_id, spend.name) == 0
    assert await score(engagement, board, member_id) == 0
