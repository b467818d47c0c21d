"""Challenges, badges and leaderboards over a real channel against the running engagement
service, counting real events on the bus (points' purchases and referrals) and paying through
the points service of the run."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from loyalty.common.v1 import money_pb2
from loyalty.engagement.v1 import challenges_pb2 as pb
from loyalty.engagement.v1 import challenges_pb2_grpc
from loyalty.engagement.v1 import events_pb2 as engagement_events
from loyalty.points.v1 import events_pb2 as points_events
from loyalty_admin.document import ProgrammeFile
from loyalty_admin.live import Live, connected
from loyalty_admin.programme import Planner, PlanRefused, apply
from loyalty_devstack.demo import huayue
from loyalty_engagement.domain.challenges import Occurrence
from loyalty_engagement.service_layer.challenges import on_occurrence
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.engagement.conftest import GROUP_MARKETING, Engagement, rid, until
from tests.support.clients import As
from tests.support.events import publish, published
from tests.support.rpc import fails

MALL_MARKETING = Caller(unit="mall", client_id="mall-crm", scopes=frozenset({"engagement:write"}))
DESK = Caller(unit="group", client_id="member-desk", scopes=frozenset({"members:manage"}))


def challenges(engagement: Engagement, caller: Caller = GROUP_MARKETING) -> Any:
    return As(challenges_pb2_grpc.ChallengeServiceStub, engagement.channel, caller)


def units() -> tuple[str, str, str]:
    """Units only this test's challenge counts (other tests' purchases are at other units)."""
    tag = uuid.uuid4().hex[:6]
    return (f"mall-{tag}", f"hotel-{tag}", f"cinema-{tag}")


async def explorer(engagement: Engagement, at: tuple[str, str, str]) -> pb.Challenge:
    response = await challenges(engagement).CreateChallenge(
        pb.CreateChallengeRequest(
            request_id=rid(),
            challenge=pb.Challenge(
                display_name=f"Explorer of {at[0]}",  # not the demo's
                goal=pb.Goal(kind=pb.GOAL_KIND_DISTINCT_UNITS, target=3, units=list(at)),
                window=pb.Window(kind=pb.WINDOW_KIND_QUARTER),
                reward=pb.ChallengeReward(points=1000, funding_unit="group", badge="explorer"),
            ),
        )
    )
    created: pb.Challenge = response.challenge
    return created


def purchase(member_id: str, unit: str, at: datetime | None = None) -> points_events.PointsEarned:
    return points_events.PointsEarned(
        member_id=member_id,
        posting_id=uuid.uuid4().hex,
        unit=unit,
        order_id=uuid.uuid4().hex,
        qualifying_spend_base=money_pb2.Money(currency_code="CNY", amount="120.00"),
        points=120,
        occurred_at=timestamp(at or datetime.now(UTC)),
    )


async def progress_in(engagement: Engagement, member_id: str, challenge: str) -> Any:
    response = await challenges(engagement).GetMemberProgress(
        pb.GetMemberProgressRequest(member=f"members/{member_id}")
    )
    found = [p for p in response.progress if p.challenge == challenge]
    return found[0] if found else None


async def badges(engagement: Engagement, member_id: str) -> list[pb.Badge]:
    response = await challenges(engagement).ListMemberBadges(
        pb.ListMemberBadgesRequest(member=f"members/{member_id}")
    )
    return list(response.badges)


async def settled(engagement: Engagement, challenge: pb.Challenge, unit: str) -> None:
    """Wait until a later purchase of another member is counted: the points events before it
    were handled (one consumer, in order)."""
    marker = await engagement.member()
    await publish(engagement.settings, "points", purchase(marker, unit))
    await until(
        lambda: progress_in(engagement, marker, challenge.name),
        lambda p: p is not None and p.value == 1,
    )


async def test_explorer_completes_on_the_third_unit_and_pays_once_however_often_it_arrives(
    engagement: Engagement,
) -> None:
    mall, hotel, cinema = units()
    challenge = await explorer(engagement, (mall, hotel, cinema))
    member_id = await engagement.member()
    for unit in (mall, mall, hotel, "airport"):
        await publish(engagement.settings, "points", purchase(member_id, unit))
    two = await until(
        lambda: progress_in(engagement, member_id, challenge.name),
        lambda p: p is not None and p.value == 2,
    )
    assert (list(two.units), two.target, two.completed) == ([hotel, mall], 3, False)
    assert await badges(engagement, member_id) == []

    third = purchase(member_id, cinema)
    event_id = await publish(engagement.settings, "points", third)
    done = await until(
        lambda: progress_in(engagement, member_id, challenge.name),
        lambda p: p is not None and p.completed,
    )
    assert (done.value, done.completed) == (3, True)
    # The third purchase again: redelivered (its event ID) and replayed (a new one).
    await publish(engagement.settings, "points", third, event_id, msg_id=rid())
    await publish(engagement.settings, "points", third)
    await publish(engagement.settings, "points", purchase(member_id, hotel))
    await settled(engagement, challenge, mall)

    postings = await until(lambda: engagement.postings(member_id), lambda p: bool(p))
    assert [(p.unit, p.points) for p in postings] == [("group", 1000)]
    held = await badges(engagement, member_id)
    assert [(b.badge, b.source) for b in held] == [("explorer", challenge.name)]
    announced = await published(
        engagement.settings, "engagement", engagement_events.BadgeEarned, [member_id]
    )
    assert [(e.badge, e.source) for e in announced[member_id]] == [("explorer", challenge.name)]


async def test_concurrent_purchases_at_three_units_complete_once(engagement: Engagement) -> None:
    at = units()
    challenge = await explorer(engagement, at)
    members = [await engagement.member() for _ in range(4)]
    await asyncio.gather(
        *(
            publish(engagement.settings, "points", purchase(m, unit))
            for m in members
            for unit in (*at, *at)  # each unit twice: two purchases race at each
        )
    )
    for member_id in members:
        done = await until(
            lambda m=member_id: progress_in(engagement, m, challenge.name),  # type: ignore[misc]
            lambda p: p is not None and p.completed,
        )
        assert (done.value, sorted(done.units)) == (3, sorted(at))
    await settled(engagement, challenge, at[0])
    for member_id in members:
        postings = await until(lambda m=member_id: engagement.postings(m), lambda p: bool(p))  # type: ignore[misc]
        assert [(p.unit, p.points) for p in postings] == [("group", 1000)]
        assert [b.badge for b in await badges(engagement, member_id)] == ["explorer"]


async def test_a_check_in_streak_completes_on_the_seventh_day_in_a_row(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    activity = f"check_in_{uuid.uuid4().hex[:6]}"  # this test's own activity type
    created = await challenges(engagement).CreateChallenge(
        pb.CreateChallengeRequest(
            request_id=rid(),
            challenge=pb.Challenge(
                display_name="7-day check-in streak",
                goal=pb.Goal(kind=pb.GOAL_KIND_STREAK, target=7, activity_type=activity),
                window=pb.Window(kind=pb.WINDOW_KIND_ROLLING_DAYS, days=366),
                reward=pb.ChallengeReward(points=70, funding_unit="mall"),
                start_time=timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
            ),
        )
    )
    name = created.challenge.name
    member_id = await engagement.member()
    # Four days in a row, a day missed; then 23:30 Shanghai time on 1 March and 00:30 on each
    # of the next six days: seven days in a row there, though in UTC the first two fall on one
    # day (six UTC days: counted in UTC it would not complete).
    days = [datetime(2026, 2, d, 4, tzinfo=UTC) for d in (20, 21, 22, 23)]
    days += [datetime(2026, 3, 1, 15, 30, tzinfo=UTC)]
    days += [datetime(2026, 3, d, 16, 30, tzinfo=UTC) for d in (1, 2, 3, 4, 5, 6)]

    def check_in(at: datetime) -> points_events.ActivityRecorded:
        return points_events.ActivityRecorded(
            member_id=member_id,
            unit="mall",
            activity_type=activity,
            activity_id=uuid.uuid4().hex,
            occurred_at=timestamp(at),
        )

    for at in days[:-1]:
        await publish(engagement.settings, "points", check_in(at))
    six = await until(
        lambda: kept_progress(engagement_service, member_id, name),
        lambda p: p is not None and p.value == 6,
    )
    assert six is not None and six.value == 6, six
    assert await engagement.postings(member_id) == []
    await publish(engagement.settings, "points", check_in(days[-1]))
    postings = await until(lambda: engagement.postings(member_id), lambda p: bool(p))
    assert [(p.unit, p.points) for p in postings] == [("mall", 70)]


async def kept_progress(service: RunningService, member_id: str, name: str) -> Any:
    """The member's progress kept for the challenge (GetMemberProgress shows a streak whose
    last day is past as 0: the kept row is read here)."""
    context = service.context
    async with EngagementUnitOfWork(
        context.database, context.settings.event_namespace, read_only=True
    ) as uow:
        kept = await uow.challenges.member_progress(member_id)
    found = [p.progress for p in kept if f"challenges/{p.challenge_id}" == name]
    return found[0] if found else None


async def test_a_leaderboard_close_pays_once_when_run_twice(engagement: Engagement) -> None:
    # A past quarter of its own: no other test's referral falls in it.
    year = random.randint(2001, 2020)
    period, during = f"{year}-Q2", datetime(year, 5, 15, 4, tzinfo=UTC)
    board = (
        await challenges(engagement).CreateLeaderboard(
            pb.CreateLeaderboardRequest(
                request_id=rid(),
                leaderboard=pb.Leaderboard(
                    display_name="Referrals of the quarter",
                    metric=pb.LEADERBOARD_METRIC_REFERRALS,
                    period=pb.WINDOW_KIND_QUARTER,
                    rewards=[
                        pb.LeaderboardReward(threshold=2, points=300, funding_unit="group"),
                        pb.LeaderboardReward(rank=1, points=100, funding_unit="group"),
                    ],
                ),
            )
        )
    ).leaderboard
    top, second, third = [await engagement.member() for _ in range(3)]
    for referrer, count in ((top, 3), (second, 2), (third, 1)):
        for _ in range(count):
            referral = points_events.ReferralRewarded(
                referrer_member_id=referrer,
                referee_member_id=uuid.uuid4().hex,
                referrer_points=500,
                referee_points=200,
                occurred_at=timestamp(during),
            )
            event_id = await publish(engagement.settings, "points", referral)
            await publish(engagement.settings, "points", referral, event_id, msg_id=rid())
    client = challenges(engagement)
    shown = await until(
        lambda: client.GetLeaderboard(pb.GetLeaderboardRequest(name=board.name, period=period)),
        lambda r: sum(s.score for s in r.standings) == 6,
    )
    assert [(s.member_id, s.rank, s.score) for s in shown.standings] == [
        (top, 1, 3),
        (second, 2, 2),
        (third, 3, 1),
    ]
    assert not shown.closed
    rank = await client.GetMemberRank(
        pb.GetMemberRankRequest(leaderboard=board.name, member_id=second, period=period)
    )
    assert (rank.period, rank.standing.rank, rank.standing.score) == (period, 2, 2)

    first = await client.CloseLeaderboardPeriod(
        pb.CloseLeaderboardPeriodRequest(leaderboard=board.name, period=period, request_id=rid())
    )
    again = await client.CloseLeaderboardPeriod(
        pb.CloseLeaderboardPeriodRequest(leaderboard=board.name, period=period, request_id=rid())
    )
    assert (first.rewards_paid, first.rewards_total) == (3, 3)
    assert (again.rewards_paid, again.rewards_total) == (0, 3)
    assert sorted(p.points for p in await engagement.postings(top)) == [100, 300]
    assert [p.points for p in await engagement.postings(second)] == [300]
    assert await engagement.postings(third) == []
    closed = await client.GetLeaderboard(pb.GetLeaderboardRequest(name=board.name, period=period))
    assert closed.closed
    not_ended = f"{datetime.now(UTC).year + 1}-Q1"
    current = await fails(
        client.CloseLeaderboardPeriod(
            pb.CloseLeaderboardPeriodRequest(
                leaderboard=board.name, period=not_ended, request_id=rid()
            )
        )
    )
    assert (current.code, current.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PERIOD_NOT_ENDED",
    )


async def test_a_badge_granted_and_revoked_by_hand_is_audited(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    member_id = await engagement.member()
    desk = challenges(engagement, DESK)
    granted = await desk.GrantBadge(
        pb.GrantBadgeRequest(
            member=f"members/{member_id}", badge="founder", reason="opening day", request_id=rid()
        )
    )
    assert (granted.badge.badge, granted.badge.source) == ("founder", "grant")
    assert [b.badge for b in await badges(engagement, member_id)] == ["founder"]
    announced = await published(
        engagement.settings, "engagement", engagement_events.BadgeEarned, [member_id]
    )
    assert [e.source for e in announced[member_id]] == ["grant"]
    revoked = await desk.RevokeBadge(
        pb.RevokeBadgeRequest(
            member=f"members/{member_id}", badge="founder", reason="by mistake", request_id=rid()
        )
    )
    assert revoked.revoked
    assert await badges(engagement, member_id) == []
    context = engagement_service.context
    async with EngagementUnitOfWork(
        context.database, context.settings.event_namespace, read_only=True
    ) as uow:
        trail = await uow.challenges.audit_trail(member_id)
    assert trail == [
        ("founder", "grant", "member-desk", "opening day"),
        ("founder", "revoke", "member-desk", "by mistake"),
    ]


async def test_bad_input_is_named_field_by_field(engagement: Engagement) -> None:
    bad = await fails(
        challenges(engagement, MALL_MARKETING).CreateChallenge(
            pb.CreateChallengeRequest(
                request_id=rid(),
                challenge=pb.Challenge(
                    display_name=" ",
                    goal=pb.Goal(kind=pb.GOAL_KIND_STREAK, target=0),
                    window=pb.Window(kind=pb.WINDOW_KIND_ROLLING_DAYS, days=400),
                    reward=pb.ChallengeReward(points=50, funding_unit="hotel"),
                ),
            )
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad.fields) == {
        "challenge.display_name",
        "challenge.goal.target",
        "challenge.goal.activity_type",
        "challenge.window.days",
        "challenge.reward.funding_unit",
    }
    unknown = await fails(
        challenges(engagement).CreateChallenge(
            pb.CreateChallengeRequest(request_id=rid(), challenge=pb.Challenge(display_name="x"))
        )
    )
    assert set(unknown.fields) == {"challenge.goal.kind", "challenge.window.kind"}
    badge = await fails(
        challenges(engagement, DESK).GrantBadge(
            pb.GrantBadgeRequest(member="members/", badge="Not A Badge", request_id=rid())
        )
    )
    assert set(badge.fields) == {"member", "badge", "reason"}
    missing = await fails(
        challenges(engagement).GetChallenge(pb.GetChallengeRequest(name="challenges/none"))
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "CHALLENGE_NOT_FOUND")
    board = await fails(
        challenges(engagement).GetLeaderboard(
            pb.GetLeaderboardRequest(name="leaderboards/x", top=500)
        )
    )
    assert board.fields == ["top"]


async def test_the_demo_files_explorer_challenge_is_made_once(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    """huayue.yaml's challenges, applied as `loyalty-admin programme apply` applies them: made
    once, found by key (and an unkeyed one of the same name counts as it) after."""
    settings = engagement.settings.model_copy(
        update={"engagement_target": engagement_service.target}
    )
    file = ProgrammeFile(challenges=huayue().challenges, sections=["challenges"])
    async with connected(settings) as services:
        live = Live(challenges=await services.challenge_list())
        first = await apply(Planner(services, live, now=datetime.now(UTC)).plan(file))
        live = Live(challenges=await services.challenge_list())
        second = Planner(services, live, now=datetime.now(UTC)).plan(file)
    assert first.done == {"challenges": "created 1"}
    assert [step.changed for step in second] == [False]
    listed = await challenges(engagement).ListChallenges(pb.ListChallengesRequest(page_size=200))
    explorers = [c for c in listed.challenges if c.key == "explorer"]
    assert len(explorers) == 1
    goal = explorers[0].goal
    assert (list(goal.units), goal.target, explorers[0].reward.badge) == (
        ["mall", "hotel", "cinema"],
        3,
        "explorer",
    )
    assert explorers[0].display_name == "Explorer" and explorers[0].unit == "group"


async def test_a_changed_challenge_is_refused_and_a_key_is_unique(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    settings = engagement.settings.model_copy(
        update={"engagement_target": engagement_service.target}
    )
    key = f"c-{uuid.uuid4().hex[:12]}"
    made = pb.Challenge(
        key=key,
        display_name=key,
        goal=pb.Goal(kind=pb.GOAL_KIND_PURCHASES, target=2),
        window=pb.Window(kind=pb.WINDOW_KIND_MONTH),
        reward=pb.ChallengeReward(badge="two-buys"),
        # Far ahead: other tests' purchases must not count toward it.
        start_time=timestamp(datetime(2100, 1, 1, tzinfo=UTC)),
    )
    await challenges(engagement).CreateChallenge(
        pb.CreateChallengeRequest(challenge=made, request_id=rid())
    )
    taken = await fails(
        challenges(engagement).CreateChallenge(
            pb.CreateChallengeRequest(challenge=made, request_id=rid())
        )
    )
    assert (taken.code, taken.reason) == (grpc.StatusCode.ALREADY_EXISTS, "CHALLENGE_KEY_TAKEN")
    changed = pb.Challenge()
    changed.CopyFrom(made)
    changed.goal.target = 3
    # One made before it had a key counts as the file's of the same unit and display name.
    older = pb.Challenge()
    older.CopyFrom(made)
    older.key, older.display_name = "", f"{key} before"
    await challenges(engagement).CreateChallenge(
        pb.CreateChallengeRequest(challenge=older, request_id=rid())
    )
    named = pb.Challenge()
    named.CopyFrom(older)
    named.key = f"{key}-named"
    async with connected(settings) as services:
        live = Live(challenges=await services.challenge_list())
        planner = Planner(services, live, now=datetime.now(UTC))
        assert not planner.plan(ProgrammeFile(challenges=[made]))[0].changed
        assert not planner.plan(ProgrammeFile(challenges=[named]))[0].changed
        with pytest.raises(PlanRefused, match=r"goal.target: 2 -> 3: a challenge is never changed"):
            planner.plan(ProgrammeFile(challenges=[changed]))


@dataclass
class CountingActions:
    """Points and benefits as the counting sees them: each award is kept."""

    awarded: list[str] = field(default_factory=list)

    async def award_points(
        self, member_id: str, points: int, funding_unit: str, reason: str, key: str
    ) -> str:
        await asyncio.sleep(0.01)  # a call's time: the transactions overlap
        self.awarded.append(key)
        return key

    async def issue_coupon(self, member_id: str, template: str, unit: str, key: str) -> str:
        return key


async def test_concurrent_transactions_of_one_member_count_every_unit_and_complete_once(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    """A member's purchases counted at once in their own transactions (as replicas' consumers
    would), at two units after a first, each reading its progress slowly: each counts (the
    progress row is locked while one does) and the completion is paid once."""
    at = units()
    challenge = await explorer(engagement, at)
    context = engagement_service.context

    def uow() -> EngagementUnitOfWork:
        return EngagementUnitOfWork(context.database, context.settings.event_namespace)

    actions = CountingActions()
    now = datetime.now(UTC)

    async def count(member_id: str, unit: str) -> None:
        async with uow() as work:
            read = work.challenges.locked_progress

            async def read_slowly(*args: Any) -> Any:
                found = await read(*args)
                await asyncio.sleep(0.05)  # the other transaction would read meanwhile
                return found

            work.challenges.locked_progress = read_slowly  # type: ignore[method-assign,assignment]
            event = Occurrence(f"purchase:{uuid.uuid4().hex}", member_id, now, unit=unit)
            await on_occurrence(work, actions, event, now)  # type: ignore[arg-type]
            await work.commit()

    members = [str(uuid.uuid4()) for _ in range(20)]
    await asyncio.gather(*(count(m, at[0]) for m in members))
    await asyncio.gather(*(count(m, unit) for m in members for unit in at[1:]))
    for member_id in members:
        progress = await progress_in(engagement, member_id, challenge.name)
        assert (progress.value, progress.completed) == (3, True), progress
    assert sorted(actions.awarded) == sorted(
        f"challenge-{challenge.name.removeprefix('challenges/')}-{m}-once" for m in members
    )
