"""The TiersService over gRPC: thin, proto -> handler -> proto (conversions in convert.py)."""

from __future__ import annotations

from datetime import datetime

import grpc
from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty.tiers.v1.tiers_service_pb2_grpc import TiersServiceServicer
from loyalty_kit import audit
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.jobs import chunks_of
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.resources import member_id_of, unit_of
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import moment_of, timestamp

from loyalty_tiers.bootstrap import Tiers
from loyalty_tiers.entrypoints import convert
from loyalty_tiers.service_layer import grants, ladders, memberships, queries, tier_year
from loyalty_tiers.service_layer.uow import TiersUnitOfWork

SERVICE = "loyalty.tiers.v1.TiersService"


class TiersServicer(UnitOfWorkServicer[TiersUnitOfWork], TiersServiceServicer):
    service = SERVICE

    def __init__(self, app: Tiers) -> None:
        super().__init__(app.uow, app.clock)

    async def GetLadder(
        self, request: pb.GetLadderRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLadderResponse:
        found = await self._read(ladders.ladder)
        return pb.GetLadderResponse(ladder=convert.ladder_message(found))

    async def UpdateLadder(
        self, request: pb.UpdateLadderRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateLadderResponse:
        new = convert.ladder_from(request.ladder)

        async def work(uow: TiersUnitOfWork, _now: datetime) -> pb.UpdateLadderResponse:
            stored = await ladders.publish_ladder(uow, new)
            audit.note(after={"version": stored.version})
            return pb.UpdateLadderResponse(ladder=convert.ladder_message(stored))

        return await self._mutate("UpdateLadder", request, pb.UpdateLadderResponse, work)

    async def GetMemberTier(
        self, request: pb.GetMemberTierRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberTierResponse:
        member_id = member_id_of(request.member, "member")
        view = await self._read(lambda uow: queries.member_view(uow, member_id, self.clock()))
        response = pb.GetMemberTierResponse(
            tier=view.tier,
            earned_tier=view.member.tier,
            since=timestamp(view.holder.starts_at if view.holder else view.member.since),
            next_tier=view.next_tier,
            progress=convert.progress_messages(view.progress, view.currency),
            retention_progress=convert.progress_messages(view.retention, view.currency),
        )
        if view.member.tier_year_end is not None:
            response.tier_year_end.CopyFrom(timestamp(view.member.tier_year_end))
        if view.holder is not None:
            response.grant.CopyFrom(convert.grant_message(view.holder))
        return response

    async def PreviewMemberTier(
        self, request: pb.PreviewMemberTierRequest, context: grpc.aio.ServicerContext
    ) -> pb.PreviewMemberTierResponse:
        member_id = member_id_of(request.member, "member")
        extra = convert.extra_activity(request.activities)
        found = await self._read(lambda uow: queries.preview(uow, member_id, extra, self.clock()))
        return pb.PreviewMemberTierResponse(
            tier=found.tier,
            upgrade=found.upgrade,
            next_tier=found.next_tier,
            progress=convert.progress_messages(found.progress, found.currency),
        )

    async def GetTierDistribution(
        self, request: pb.GetTierDistributionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTierDistributionResponse:
        rules, counts = await self._read(queries.distribution)
        return pb.GetTierDistributionResponse(
            counts=[pb.TierCount(tier=t, members=n) for t, n in counts],
            ladder_version=rules.version,
        )

    async def RunYearEnd(
        self, request: pb.RunYearEndRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunYearEndResponse:
        chunks = chunks_of(request, "max_members")
        as_of = moment_of(request, "as_of") or self.clock()
        total = tier_year.YearEnd()
        if not request.validate_only:
            total = await tier_year.run_year_end(self.uow, as_of, chunks.size, limit=chunks.limit)
        return pb.RunYearEndResponse(
            judged=total.judged,
            retained=total.retained,
            downgraded=total.downgraded,
            remaining=await self._read(lambda uow: tier_year.members_due(uow, as_of)),
        )

    async def RunGrantExpiry(
        self, request: pb.RunGrantExpiryRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunGrantExpiryResponse:
        chunks = chunks_of(request, "max_grants")
        as_of = moment_of(request, "as_of") or self.clock()
        total = grants.Expiry()
        if not request.validate_only:
            total = await grants.run_grant_expiry(self.uow, as_of, chunks.size, limit=chunks.limit)
        return pb.RunGrantExpiryResponse(
            ended=total.ended,
            changed=total.changed,
            remaining=await self._read(lambda uow: grants.grants_due(uow, as_of)),
        )

    async def ListTierHistory(
        self, request: pb.ListTierHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTierHistoryResponse:
        member_id = member_id_of(request.member, "member")
        filters = {"member": member_id}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)

        rows = await self._read(
            lambda uow: queries.history(uow, member_id, page.after, page.size + 1)
        )
        response = pb.ListTierHistoryResponse(
            changes=[
                pb.TierChange(
                    from_tier=e.from_tier,
                    to_tier=e.to_tier,
                    reason=e.reason,
                    change_time=timestamp(e.at),
                )
                for _, e in rows[: page.size]
            ]
        )
        if len(rows) > page.size:
            response.next_page_token = next_token(rows[page.size - 1][0], filters)
        return response

    async def CreateTierGrant(
        self, request: pb.CreateTierGrantRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTierGrantResponse:
        member_id = member_id_of(request.member, "member")
        grant = request.tier_grant
        kind = convert.kind_of(grant.kind)
        ends_at = moment_of(grant, "end_time", "tier_grant.end_time")

        async def work(uow: TiersUnitOfWork, now: datetime) -> pb.CreateTierGrantResponse:
            done = await grants.create_grant(
                uow, member_id, kind, grant.tier.strip(), grant.reason, ends_at, now
            )
            return pb.CreateTierGrantResponse(
                tier_grant=convert.grant_message(done.grant), tier=done.tier
            )

        return await self._mutate("CreateTierGrant", request, pb.CreateTierGrantResponse, work)

    async def RevokeTierGrant(
        self, request: pb.RevokeTierGrantRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeTierGrantResponse:
        member_id, grant_id = convert.grant_of(request.name, "name")
        if not request.reason.strip():
            raise InvalidArgument.of([FieldViolation("reason", "required")])

        async def work(uow: TiersUnitOfWork, now: datetime) -> pb.RevokeTierGrantResponse:
            done = await grants.revoke_grant(uow, member_id, grant_id, request.reason, now)
            return pb.RevokeTierGrantResponse(
                tier_grant=convert.grant_message(done.grant), tier=done.tier
            )

        return await self._mutate("RevokeTierGrant", request, pb.RevokeTierGrantResponse, work)

    async def ListTierGrants(
        self, request: pb.ListTierGrantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTierGrantsResponse:
        member_id = member_id_of(request.member, "member")
        filters = {"member": member_id}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)
        after = (datetime.fromisoformat(page.after[0]), page.after[1]) if page.after else None

        rows = await self._read(lambda uow: queries.grants(uow, member_id, after, page.size + 1))
        response = pb.ListTierGrantsResponse(
            tier_grants=[convert.grant_message(g) for _, g in rows[: page.size]]
        )
        if len(rows) > page.size:
            created, last = rows[page.size - 1]
            response.next_page_token = next_token([created.isoformat(), last.grant_id], filters)
        return response

    async def PurchaseMembership(
        self, request: pb.PurchaseMembershipRequest, context: grpc.aio.ServicerContext
    ) -> pb.PurchaseMembershipResponse:
        member_id = member_id_of(request.member, "member")
        unit = unit_of(request.unit)

        async def work(uow: TiersUnitOfWork, now: datetime) -> pb.PurchaseMembershipResponse:
            done = await memberships.purchase_membership(
                uow,
                member_id,
                unit,
                request.tier.strip(),
                request.order_id.strip(),
                request.months,
                now,
            )
            return pb.PurchaseMembershipResponse(
                tier_grant=convert.grant_message(done.grant), renewed=done.renewed, tier=done.tier
            )

        return await self._mutate(
            "PurchaseMembership", request, pb.PurchaseMembershipResponse, work
        )

    async def RefundMembership(
        self, request: pb.RefundMembershipRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefundMembershipResponse:
        member_id = member_id_of(request.member, "member")
        unit = unit_of(request.unit)

        async def work(uow: TiersUnitOfWork, now: datetime) -> pb.RefundMembershipResponse:
            done = await memberships.refund_membership(
                uow, member_id, unit, request.order_id.strip(), now
            )
            return pb.RefundMembershipResponse(
                tier_grant=convert.grant_message(done.grant), tier=done.tier
            )

        return await self._mutate("RefundMembership", request, pb.RefundMembershipResponse, work)
