"""The ChallengeService over gRPC: thin, proto -> use case -> proto. Who may touch a challenge
or a leaderboard: the group's team every one, a unit's team its own unit's (access.py)."""

from __future__ import annotations

from datetime import datetime

import grpc
from loyalty.engagement.v1 import challenges_pb2 as pb
from loyalty.engagement.v1.challenges_pb2_grpc import ChallengeServiceServicer
from loyalty_kit.caller import ADMIN, UnitMismatch, current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.kernel.members import member_id_of
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import moment_of, timestamp

from loyalty_engagement.adapters.challenges import HeldBadge, StoredChallenge, StoredLeaderboard
from loyalty_engagement.bootstrap import Engagement
from loyalty_engagement.domain import challenges as domain
from loyalty_engagement.domain.journeys import key_violations
from loyalty_engagement.service_layer import challenges
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork

SERVICE = "loyalty.engagement.v1.ChallengeService"

_GOALS = {
    pb.GOAL_KIND_PURCHASES: domain.GoalKind.PURCHASES,
    pb.GOAL_KIND_SPEND: domain.GoalKind.SPEND,
    pb.GOAL_KIND_DISTINCT_UNITS: domain.GoalKind.DISTINCT_UNITS,
    pb.GOAL_KIND_STREAK: domain.GoalKind.STREAK,
}
_WINDOWS = {
    pb.WINDOW_KIND_MONTH: domain.WindowKind.MONTH,
    pb.WINDOW_KIND_QUARTER: domain.WindowKind.QUARTER,
    pb.WINDOW_KIND_ROLLING_DAYS: domain.WindowKind.ROLLING_DAYS,
}
_METRICS = {
    pb.LEADERBOARD_METRIC_REFERRALS: domain.Metric.REFERRALS,
    pb.LEADERBOARD_METRIC_SPEND: domain.Metric.SPEND,
    pb.LEADERBOARD_METRIC_VISITS: domain.Metric.VISITS,
}
_GOAL_MESSAGES = {v: k for k, v in _GOALS.items()}
_WINDOW_MESSAGES = {v: k for k, v in _WINDOWS.items()}
_METRIC_MESSAGES = {v: k for k, v in _METRICS.items()}


class ChallengeServicer(UnitOfWorkServicer[EngagementUnitOfWork], ChallengeServiceServicer):
    service = SERVICE

    def __init__(self, app: Engagement) -> None:
        super().__init__(app.uow, app.clock)
        self.app = app

    async def CreateChallenge(
        self, request: pb.CreateChallengeRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateChallengeResponse:
        spec = challenge_spec_of(request.challenge, request.challenge.unit or _owner_unit())
        spec.check()
        key = request.challenge.key
        bad = key_violations(key, "challenge.key")
        if bad:
            raise InvalidArgument.of(bad)

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.CreateChallengeResponse:
            found = await challenges.create(uow, spec, now, key)
            return pb.CreateChallengeResponse(challenge=challenge_message(found))

        return await self._mutate("CreateChallenge", request, pb.CreateChallengeResponse, work)

    async def GetChallenge(
        self, request: pb.GetChallengeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetChallengeResponse:
        challenge_id = _id_of(request.name, "challenges/", "name")
        found = await self._read(lambda uow: challenges.get(uow, challenge_id))
        _may_touch(found.spec.unit)
        return pb.GetChallengeResponse(challenge=challenge_message(found))

    async def ListChallenges(
        self, request: pb.ListChallengesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListChallengesResponse:
        unit = _confined_unit()
        filters = {"unit": unit}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        after = page.after if isinstance(page.after, str) else ""
        found = await self._read(lambda uow: uow.challenges.page(unit, after, page.size + 1))
        more = len(found) > page.size
        found = found[: page.size]
        token = next_token(found[-1].challenge_id, filters) if more and found else ""
        return pb.ListChallengesResponse(
            challenges=[challenge_message(c) for c in found], next_page_token=token
        )

    async def GetMemberProgress(
        self, request: pb.GetMemberProgressRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberProgressResponse:
        member_id = member_id_of(request.member, "member")
        now = self.clock()
        views = await self._read(lambda uow: challenges.member_progress(uow, member_id, now))
        progress = []
        for v in views:
            message = pb.ChallengeProgress(
                challenge=f"challenges/{v.challenge.challenge_id}",
                display_name=v.challenge.spec.display_name,
                period=v.period,
                value=v.progress.value,
                target=v.challenge.spec.goal.target,
                units=sorted(v.progress.units),
                completed=v.completed_at is not None,
            )
            if v.completed_at:
                message.complete_time.CopyFrom(timestamp(v.completed_at))
            progress.append(message)
        return pb.GetMemberProgressResponse(progress=progress)

    async def ListMemberBadges(
        self, request: pb.ListMemberBadgesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMemberBadgesResponse:
        member_id = member_id_of(request.member, "member")
        filters = {"member": member_id}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        after = page.after if isinstance(page.after, str) else ""
        held = await self._read(lambda uow: uow.challenges.badges(member_id, after, page.size + 1))
        more = len(held) > page.size
        held = held[: page.size]
        token = next_token(held[-1].badge, filters) if more and held else ""
        return pb.ListMemberBadgesResponse(
            badges=[badge_message(b) for b in held], next_page_token=token
        )

    async def GrantBadge(
        self, request: pb.GrantBadgeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GrantBadgeResponse:
        member_id, badge, reason = _badge_request(request)
        caller = current_caller()

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.GrantBadgeResponse:
            held = await challenges.grant_badge(
                uow, member_id, badge, reason, (caller.unit, caller.client_id), now
            )
            return pb.GrantBadgeResponse(badge=badge_message(held))

        return await self._mutate("GrantBadge", request, pb.GrantBadgeResponse, work)

    async def RevokeBadge(
        self, request: pb.RevokeBadgeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeBadgeResponse:
        member_id, badge, reason = _badge_request(request)
        caller = current_caller()

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.RevokeBadgeResponse:
            revoked = await challenges.revoke_badge(
                uow, member_id, badge, reason, (caller.unit, caller.client_id), now
            )
            return pb.RevokeBadgeResponse(revoked=revoked)

        return await self._mutate("RevokeBadge", request, pb.RevokeBadgeResponse, work)

    async def CreateLeaderboard(
        self, request: pb.CreateLeaderboardRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateLeaderboardResponse:
        spec = leaderboard_spec_of(request.leaderboard, request.leaderboard.unit or _owner_unit())
        spec.check()

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.CreateLeaderboardResponse:
            found = await challenges.create_leaderboard(uow, spec, now)
            return pb.CreateLeaderboardResponse(leaderboard=leaderboard_message(found))

        return await self._mutate("CreateLeaderboard", request, pb.CreateLeaderboardResponse, work)

    async def GetLeaderboard(
        self, request: pb.GetLeaderboardRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLeaderboardResponse:
        board_id = _id_of(request.name, "leaderboards/", "name")
        if not 0 <= request.top <= 100:
            raise InvalidArgument.of([FieldViolation("top", "0 to 100")])
        now = self.clock()

        async def work(uow: EngagementUnitOfWork) -> pb.GetLeaderboardResponse:
            board = await challenges.leaderboard(uow, board_id)
            _may_touch(board.spec.unit)
            period = challenges.period_named(board, request.period, now, "period")
            top = await uow.challenges.top(
                board.spec.metric.value, challenges.scope_of(board), period, request.top or 10
            )
            closed = await uow.challenges.closed_at(board_id, period)
            return pb.GetLeaderboardResponse(
                leaderboard=leaderboard_message(board),
                period=period,
                standings=[
                    pb.Standing(member_id=s.member_id, rank=s.rank, score=s.score) for s in top
                ],
                closed=closed is not None,
            )

        return await self._read(work)

    async def GetMemberRank(
        self, request: pb.GetMemberRankRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberRankResponse:
        board_id = _id_of(request.leaderboard, "leaderboards/", "leaderboard")
        if not request.member_id:
            raise InvalidArgument.of([FieldViolation("member_id", "a member ID is required")])
        now = self.clock()

        async def work(uow: EngagementUnitOfWork) -> pb.GetMemberRankResponse:
            board = await challenges.leaderboard(uow, board_id)
            period = challenges.period_named(board, request.period, now, "period")
            s = await uow.challenges.rank_of(
                board.spec.metric.value, challenges.scope_of(board), period, request.member_id
            )
            return pb.GetMemberRankResponse(
                period=period,
                standing=pb.Standing(member_id=s.member_id, rank=s.rank, score=s.score),
            )

        return await self._read(work)

    async def CloseLeaderboardPeriod(
        self, request: pb.CloseLeaderboardPeriodRequest, context: grpc.aio.ServicerContext
    ) -> pb.CloseLeaderboardPeriodResponse:
        board_id = _id_of(request.leaderboard, "leaderboards/", "leaderboard")
        if not request.period:
            raise InvalidArgument.of([FieldViolation("period", "the period to close")])
        now = self.clock()
        board = await self._read(lambda uow: challenges.leaderboard(uow, board_id))
        _may_touch(board.spec.unit)
        period = challenges.period_named(board, request.period, now, "period")
        closed = await challenges.close_period(
            self.app.uow, self.app.actions, board_id, period, now
        )
        return pb.CloseLeaderboardPeriodResponse(
            rewards_paid=closed.paid, rewards_total=closed.total
        )


# --- who may see what -------------------------------------------------------------------------


def _confined_unit() -> str | None:
    caller = current_caller()
    return None if caller.may(ADMIN) or caller.unit == GROUP else caller.unit


def _owner_unit() -> str:
    return _confined_unit() or GROUP


def _may_touch(unit: str) -> None:
    confined = _confined_unit()
    if confined is not None and confined != unit:
        raise UnitMismatch(unit, confined)


def _id_of(name: str, prefix: str, field: str) -> str:
    found = name.removeprefix(prefix)
    if not name.startswith(prefix) or not found or "/" in found or len(found) > 64:
        raise InvalidArgument.of([FieldViolation(field, f"a name: {prefix}{{id}}")])
    return found


def _badge_request(
    request: pb.GrantBadgeRequest | pb.RevokeBadgeRequest,
) -> tuple[str, str, str]:
    bad: list[FieldViolation] = []
    try:
        member_id = member_id_of(request.member, "member")
    except InvalidArgument as error:
        bad.extend(error.field_violations)
        member_id = ""
    if not domain.BADGE.match(request.badge):
        bad.append(FieldViolation("badge", "a badge code: lower-case letters, digits, - and _"))
    if not request.reason.strip():
        bad.append(FieldViolation("reason", "a reason is required (kept in the audit)"))
    if bad:
        raise InvalidArgument.of(bad)
    return member_id, request.badge, request.reason.strip()


# --- proto <-> domain -------------------------------------------------------------------------


def challenge_spec_of(message: pb.Challenge, unit: str) -> domain.ChallengeSpec:
    """What cannot be read is INVALID_ARGUMENT naming each field (the domain's own checks
    follow in `ChallengeSpec.check`)."""
    bad: list[FieldViolation] = []
    goal = _GOALS.get(message.goal.kind)
    if goal is None:
        bad.append(FieldViolation("challenge.goal.kind", "a known goal kind is required"))
    window = _WINDOWS.get(message.window.kind)
    if window is None:
        bad.append(FieldViolation("challenge.window.kind", "a known window kind is required"))
    start = moment_of(message, "start_time", "challenge.start_time")
    end = moment_of(message, "end_time", "challenge.end_time")
    if bad:
        raise InvalidArgument.of(bad)
    assert goal is not None and window is not None
    g, r = message.goal, message.reward
    return domain.ChallengeSpec(
        display_name=message.display_name,
        unit=unit,
        goal=domain.Goal(goal, g.target, g.unit, tuple(g.units), g.activity_type),
        window=domain.Window(window, message.window.days),
        reward=domain.Reward(r.points, r.funding_unit, r.coupon_template, r.coupon_unit, r.badge),
        repeatable=message.repeatable,
        time_zone=message.time_zone or domain.DEFAULT_TIME_ZONE,
        start_at=start,
        end_at=end,
    )


def challenge_message(challenge: StoredChallenge) -> pb.Challenge:
    spec = challenge.spec
    g, r = spec.goal, spec.reward
    message = pb.Challenge(
        name=f"challenges/{challenge.challenge_id}",
        display_name=spec.display_name,
        unit=spec.unit,
        goal=pb.Goal(
            kind=_GOAL_MESSAGES[g.kind],
            target=g.target,
            unit=g.unit,
            units=list(g.units),
            activity_type=g.activity_type,
        ),
        window=pb.Window(kind=_WINDOW_MESSAGES[spec.window.kind], days=spec.window.days),
        reward=pb.ChallengeReward(
            points=r.points,
            funding_unit=r.funding_unit,
            coupon_template=r.coupon_template,
            coupon_unit=r.coupon_unit,
            badge=r.badge,
        ),
        repeatable=spec.repeatable,
        time_zone=spec.time_zone,
        start_time=timestamp(challenge.start_at),
        create_time=timestamp(challenge.created_at),
        key=challenge.key,
    )
    if spec.end_at:
        message.end_time.CopyFrom(timestamp(spec.end_at))
    return message


def badge_message(held: HeldBadge) -> pb.Badge:
    return pb.Badge(badge=held.badge, source=held.source, earn_time=timestamp(held.earned_at))


def leaderboard_spec_of(message: pb.Leaderboard, unit: str) -> domain.LeaderboardSpec:
    bad: list[FieldViolation] = []
    metric = _METRICS.get(message.metric)
    if metric is None:
        bad.append(FieldViolation("leaderboard.metric", "a known metric is required"))
    period = _WINDOWS.get(message.period)
    if period is None:
        bad.append(FieldViolation("leaderboard.period", "MONTH or QUARTER"))
    if bad:
        raise InvalidArgument.of(bad)
    assert metric is not None and period is not None
    return domain.LeaderboardSpec(
        display_name=message.display_name,
        unit=unit,
        metric=metric,
        scope_unit=message.scope_unit,
        period=period,
        rewards=tuple(
            domain.LeaderboardReward(
                r.rank, r.threshold, r.points, r.funding_unit, r.coupon_template
            )
            for r in message.rewards
        ),
    )


def leaderboard_message(board: StoredLeaderboard) -> pb.Leaderboard:
    spec = board.spec
    return pb.Leaderboard(
        name=f"leaderboards/{board.leaderboard_id}",
        display_name=spec.display_name,
        unit=spec.unit,
        metric=_METRIC_MESSAGES[spec.metric],
        scope_unit=spec.scope_unit,
        period=_WINDOW_MESSAGES[spec.period],
        rewards=[
            pb.LeaderboardReward(
                rank=r.rank,
                threshold=r.threshold,
                points=r.points,
                funding_unit=r.funding_unit,
                coupon_template=r.coupon_template,
            )
            for r in spec.rewards
        ],
    )
