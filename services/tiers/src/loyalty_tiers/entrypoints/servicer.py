"""The TiersService over gRPC, and protobuf <-> ladder conversion."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import grpc
from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_kit.caller import current_caller, require_scope
from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations
from loyalty_kit.idempotency import run_idempotent
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.resources import member_id_of
from loyalty_kit.server import ServiceContext
from loyalty_kit.timestamps import moment, timestamp

from loyalty_tiers.domain.ladder import Ladder, Metric, TierRule, decimal_of
from loyalty_tiers.service_layer import handlers
from loyalty_tiers.service_layer.uow import TiersUnitOfWork

SERVICE = "loyalty.tiers.v1.TiersService"
T = TypeVar("T")
Clock = Callable[[], datetime]

METRICS = {
    Metric.QUALIFYING_SPEND: pb.METRIC_QUALIFYING_SPEND,
    Metric.POINTS_EARNED: pb.METRIC_POINTS_EARNED,
    Metric.VISITS: pb.METRIC_VISITS,
}


def ladder_from(message: pb.Ladder) -> Ladder:
    problems = Violations()
    by_value = {v: m for m, v in METRICS.items()}
    tiers: list[TierRule] = []

    def rule(items: Any, where: str) -> dict[Metric, Decimal]:
        found: dict[Metric, Decimal] = {}
        for j, threshold in enumerate(items):
            metric = by_value.get(threshold.metric)
            if metric is None:
                problems.add(f"{where}[{j}].metric", "QUALIFYING_SPEND, POINTS_EARNED or VISITS")
                continue
            try:
                found[metric] = decimal_of(threshold.value, f"{where}[{j}].value")
            except InvalidArgument as error:
                problems.items.extend(error.field_violations)
        return found

    for i, tier in enumerate(message.tiers):
        thresholds = rule(tier.thresholds, f"ladder.tiers[{i}].thresholds")
        retention = rule(tier.retention_thresholds, f"ladder.tiers[{i}].retention_thresholds")
        tiers.append(
            TierRule(
                code=tier.code.strip(),
                name_zh=tier.name_zh,
                name_en=tier.name_en,
                thresholds=thresholds,
                combine_all=tier.combine == pb.COMBINE_ALL,
                welcome_gift_code=tier.welcome_gift_code,
                retention=retention,
            )
        )
    problems.raise_if_any()
    return Ladder(
        version=0,
        tiers=tiers,
        window_months=message.window_months or 12,
        downgrade_to_supported=message.downgrade_policy == pb.DOWNGRADE_POLICY_TO_SUPPORTED,
    )


def ladder_message(ladder: Ladder) -> pb.Ladder:
    return pb.Ladder(
        version=ladder.version,
        window_months=ladder.window_months,
        tiers=[
            pb.Tier(
                code=t.code,
                name_zh=t.name_zh,
                name_en=t.name_en,
                thresholds=[
                    pb.Threshold(metric=METRICS[m], value=str(v)) for m, v in t.thresholds.items()
                ],
                combine=pb.COMBINE_ALL if t.combine_all else pb.COMBINE_ANY,
                welcome_gift_code=t.welcome_gift_code,
                retention_thresholds=[
                    pb.Threshold(metric=METRICS[m], value=str(v)) for m, v in t.retention.items()
                ],
            )
            for t in ladder.tiers
        ],
        downgrade_policy=(
            pb.DOWNGRADE_POLICY_TO_SUPPORTED
            if ladder.downgrade_to_supported
            else pb.DOWNGRADE_POLICY_ONE_LEVEL
        ),
    )


class TiersServicer(tiers_service_pb2_grpc.TiersServiceServicer):
    def __init__(self, context: ServiceContext, clock: Clock) -> None:
        assert context.sessions is not None
        self.sessions = context.sessions
        self.namespace = context.settings.event_namespace
        self.clock = clock

    def uow(self, *, read_only: bool = False) -> TiersUnitOfWork:
        return TiersUnitOfWork(self.sessions, self.namespace, read_only=read_only)

    async def _read(self, work: Callable[[TiersUnitOfWork], Awaitable[T]]) -> T:
        async with self.uow(read_only=True) as uow:
            return await work(uow)

    async def GetLadder(
        self, request: pb.GetLadderRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLadderResponse:
        found = await self._read(handlers.ladder)
        return pb.GetLadderResponse(ladder=ladder_message(found))

    async def UpdateLadder(
        self, request: pb.UpdateLadderRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateLadderResponse:
        require_scope("admin")
        new = ladder_from(request.ladder)
        scope = f"{SERVICE}/UpdateLadder:{current_caller().client_id}"

        async def work(uow: Any) -> pb.UpdateLadderResponse:
            stored = await handlers.publish_ladder(uow, new)
            return pb.UpdateLadderResponse(ladder=ladder_message(stored))

        return await run_idempotent(self.uow, scope, request, pb.UpdateLadderResponse, work)

    async def GetMemberTier(
        self, request: pb.GetMemberTierRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberTierResponse:
        member_id = member_id_of(request.member, "member")
        view = await self._read(lambda uow: handlers.member_view(uow, member_id, self.clock()))
        response = pb.GetMemberTierResponse(
            tier=view.member.tier,
            since=timestamp(view.member.since),
            next_tier=view.next_tier,
            progress=[
                pb.Progress(
                    metric=METRICS[metric],
                    current=str(current),
                    required=str(required),
                    remaining=str(max(required - current, Decimal(0))),
                )
                for metric, current, required in view.progress
            ],
        )
        if view.member.tier_year_end is not None:
            response.tier_year_end.CopyFrom(timestamp(view.member.tier_year_end))
        return response

    async def RunYearEnd(
        self, request: pb.RunYearEndRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunYearEndResponse:
        require_scope("admin")
        if request.chunk_size < 0:
            raise InvalidArgument.of([FieldViolation("chunk_size", "must not be negative")])
        now = self.clock()
        as_of = moment(request.as_of) if request.HasField("as_of") else now
        total = await handlers.run_year_end(self.uow, as_of, request.chunk_size or 500)
        return pb.RunYearEndResponse(
            judged=total.judged, retained=total.retained, downgraded=total.downgraded
        )

    async def ListTierHistory(
        self, request: pb.ListTierHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTierHistoryResponse:
        member_id = member_id_of(request.member, "member")
        filters = {"member": member_id}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)
        rows = await self._read(lambda uow: uow.tiers.history(member_id, page.after, page.size + 1))
        response = pb.ListTierHistoryResponse(
            changes=[
                pb.TierChange(from_tier=f, to_tier=t, reason=r, change_time=timestamp(at))
                for _, f, t, r, at in rows[: page.size]
            ]
        )
        if len(rows) > page.size:
            response.next_page_token = next_token(rows[page.size - 1][0], filters)
        return response
