"""The BenefitsService over gRPC: request -> command -> handler -> response.

Mutations run through the kit's `run_idempotent` (the response stored with the request_id in
the same transaction), except RedeemReward, whose steps span the points service: its
redemption record is its idempotency key (see service_layer/rewards.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1.benefits_service_pb2_grpc import BenefitsServiceServicer
from loyalty_kit import audit
from loyalty_kit.caller import check_unit, confining_unit
from loyalty_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument
from loyalty_kit.idempotency import request_scope
from loyalty_kit.jobs import chunks_of
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.resources import member_id_of, unit_of
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import moment_of
from loyalty_kit.validation import bounded

from loyalty_benefits.bootstrap import Benefits
from loyalty_benefits.entrypoints import convert
from loyalty_benefits.service_layer import handlers, issuances
from loyalty_benefits.service_layer.uow import BenefitsUnitOfWork

SERVICE = "loyalty.benefits.v1.BenefitsService"
MAX_MEMBERS_PER_ISSUE = 1000


class BenefitsServicer(UnitOfWorkServicer[BenefitsUnitOfWork], BenefitsServiceServicer):
    service = SERVICE

    def __init__(self, app: Benefits) -> None:
        super().__init__(app.uow, app.clock)
        self.redemptions = app.redemptions
        self.issuer = app.issuer
        self.fixed_birthday_gifts = app.settings.fixed_birthday_gifts

    # --- catalogue ----------------------------------------------------------------------------
    async def GetCatalogue(
        self, request: pb.GetCatalogueRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCatalogueResponse:
        found = await self._read(handlers.catalogue)
        return pb.GetCatalogueResponse(catalogue=convert.catalogue_message(found))

    async def UpdateCatalogue(
        self, request: pb.UpdateCatalogueRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCatalogueResponse:
        new = convert.catalogue_from(request.catalogue)

        async def work(uow: BenefitsUnitOfWork, _now: datetime) -> pb.UpdateCatalogueResponse:
            stored = await handlers.publish_catalogue(uow, new)
            audit.note(after={"version": stored.version})
            return pb.UpdateCatalogueResponse(catalogue=convert.catalogue_message(stored))

        return await self._mutate("UpdateCatalogue", request, pb.UpdateCatalogueResponse, work)

    # --- entitlements -------------------------------------------------------------------------
    async def ListEntitlements(
        self, request: pb.ListEntitlementsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEntitlementsResponse:
        member_id = member_id_of(request.member, "member")
        unit = unit_of(request.unit) if request.unit else ""
        filters = {"member": member_id, "unit": unit}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        tier, found = await self._read(
            lambda uow: handlers.entitlements(uow, member_id, unit, self.clock())
        )
        after = [e for e in found if page.after is None or e.benefit.code > page.after]
        response = pb.ListEntitlementsResponse(
            tier=tier, entitlements=[convert.entitlement_message(e) for e in after[: page.size]]
        )
        if len(after) > page.size:
            response.next_page_token = next_token(after[page.size - 1].benefit.code, filters)
        return response

    async def ConsumeBenefit(
        self, request: pb.ConsumeBenefitRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConsumeBenefitResponse:
        member_id = member_id_of(request.member, "member")
        benefit = convert.code_of(request.benefit, "benefit")
        unit = unit_of(request.unit)
        order_id = bounded(request.order_id, "order_id", required=False).strip()

        async def work(uow: BenefitsUnitOfWork, now: datetime) -> pb.ConsumeBenefitResponse:
            consumption, entitlement = await handlers.consume(
                uow, member_id, benefit, unit, order_id, now
            )
            return pb.ConsumeBenefitResponse(
                consumption=convert.consumption_message(consumption),
                entitlement=convert.entitlement_message(entitlement),
            )

        return await self._mutate("ConsumeBenefit", request, pb.ConsumeBenefitResponse, work)

    async def LookupConsumption(
        self, request: pb.LookupConsumptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.LookupConsumptionResponse:
        member = f"members/{member_id_of(request.member, 'member')}"
        unit = confining_unit()  # authorised like a release: the consuming unit, or an admin
        found = await self._settled("ConsumeBenefit", request.request_id, pb.ConsumeBenefitResponse)
        if found is None or not found.consumption.name.startswith(f"{member}/"):
            return pb.LookupConsumptionResponse(consumed=False)
        check_unit(found.consumption.unit, unit)
        return pb.LookupConsumptionResponse(consumed=True, consumption=found)

    async def ReleaseConsumption(
        self, request: pb.ReleaseConsumptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseConsumptionResponse:
        member, consumption_id = convert.child_of(request.name, "consumptions", "name")
        member_id = member_id_of(member, "name")
        consumption_id = convert.uuid_of(consumption_id, "name")
        unit = confining_unit()

        async def work(uow: BenefitsUnitOfWork, now: datetime) -> pb.ReleaseConsumptionResponse:
            released = await handlers.release(
                uow, member_id, consumption_id, request.reason.strip(), unit, now
            )
            return pb.ReleaseConsumptionResponse(consumption=convert.consumption_message(released))

        return await self._mutate(
            "ReleaseConsumption", request, pb.ReleaseConsumptionResponse, work
        )

    # --- coupons ------------------------------------------------------------------------------
    async def IssueCoupons(
        self, request: pb.IssueCouponsRequest, context: grpc.aio.ServicerContext
    ) -> pb.IssueCouponsResponse:
        template = convert.code_of(request.template, "template")
        if not request.members or len(request.members) > MAX_MEMBERS_PER_ISSUE:
            raise InvalidArgument.of(
                [FieldViolation("members", f"1 to {MAX_MEMBERS_PER_ISSUE} members")]
            )
        member_ids = [member_id_of(m, f"members[{i}]") for i, m in enumerate(request.members)]
        grant_key = request.grant_key.strip()
        if grant_key and (len(grant_key) > 100 or len(set(member_ids)) < len(member_ids)):
            raise InvalidArgument.of(
                [FieldViolation("grant_key", "at most 100 characters, each member listed once")]
            )
        issuer = confining_unit()

        async def work(uow: BenefitsUnitOfWork, now: datetime) -> pb.IssueCouponsResponse:
            coupons = await handlers.issue_coupons(
                uow, template, member_ids, issuer, now, grant_key
            )
            return pb.IssueCouponsResponse(
                coupons=[convert.coupon_message(c, now) for c in coupons]
            )

        return await self._mutate("IssueCoupons", request, pb.IssueCouponsResponse, work)

    async def CreateCouponIssuance(
        self, request: pb.CreateCouponIssuanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCouponIssuanceResponse:
        template, tag, segment, chunk_size = convert.issuance_request_of(request)
        issuer = confining_unit()
        if segment:
            await issuances.check_segment(self.issuer.dynamic, segment)

        async def work(uow: BenefitsUnitOfWork, now: datetime) -> pb.CreateCouponIssuanceResponse:
            created = await issuances.create(
                uow, template, tag, issuer, chunk_size, now, segment=segment
            )
            return pb.CreateCouponIssuanceResponse(
                coupon_issuance=convert.issuance_message(created)
            )

        response = await self._mutate(
            "CreateCouponIssuance", request, pb.CreateCouponIssuanceResponse, work
        )
        self.issuer.wake.set()  # committed: this replica's job starts on it now
        return response

    async def GetCouponIssuance(
        self, request: pb.GetCouponIssuanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCouponIssuanceResponse:
        issuance_id = convert.issuance_id_of(request.name)
        found = await self._read(lambda uow: issuances.get(uow, issuance_id))
        return pb.GetCouponIssuanceResponse(coupon_issuance=convert.issuance_message(found))

    async def ListCouponIssuances(
        self, request: pb.ListCouponIssuancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCouponIssuancesResponse:
        state = convert.issuance_state_of(request.state)
        issuer = confining_unit()  # a unit sees the issuances it started; an admin, all
        filters: dict[str, Any] = {"issuer": issuer, "state": state.value if state else ""}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        before = convert.issuance_position(page.after)
        found = await self._read(
            lambda uow: issuances.page(uow, issuer, state, before, page.size + 1)
        )
        response = pb.ListCouponIssuancesResponse(
            coupon_issuances=[convert.issuance_message(i) for i in found[: page.size]]
        )
        if len(found) > page.size:
            last = found[page.size - 1]
            position = [last.created_at.isoformat(), last.issuance_id]
            response.next_page_token = next_token(position, filters)
        return response

    async def GetCoupon(
        self, request: pb.GetCouponRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCouponResponse:
        member, code = convert.child_of(request.name, "coupons", "name")
        member_id = member_id_of(member, "name")
        found = await self._read(lambda uow: handlers.coupon(uow, member_id, code))
        return pb.GetCouponResponse(coupon=convert.coupon_message(found, self.clock()))

    async def ListCoupons(
        self, request: pb.ListCouponsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCouponsResponse:
        member_id = member_id_of(request.member, "member")
        state = convert.coupon_state_of(request.state)
        filters: dict[str, Any] = {"member": member_id, "state": state.value if state else ""}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)
        now = self.clock()
        rows = await self._read(
            lambda uow: handlers.member_coupons(
                uow, member_id, state, now, page.after, page.size + 1
            )
        )
        response = pb.ListCouponsResponse(
            coupons=[convert.coupon_message(c, now) for _, c in rows[: page.size]]
        )
        if len(rows) > page.size:
            response.next_page_token = next_token(rows[page.size - 1][0], filters)
        return response

    async def RedeemCoupon(
        self, request: pb.RedeemCouponRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeemCouponResponse:
        member, code = convert.child_of(request.name, "coupons", "name")
        member_id = member_id_of(member, "name")
        unit = unit_of(request.unit)
        order_id = bounded(request.order_id, "order_id").strip()
        order = convert.amount_of(request.order_amount, "order_amount")

        async def work(uow: BenefitsUnitOfWork, now: datetime) -> pb.RedeemCouponResponse:
            coupon, discount = await handlers.redeem_coupon(
                uow, member_id, code, unit, order_id, order, now
            )
            return pb.RedeemCouponResponse(
                coupon=convert.coupon_message(coupon, now), discount=discount.message()
            )

        return await self._mutate("RedeemCoupon", request, pb.RedeemCouponResponse, work)

    async def LookupCouponRedemption(
        self, request: pb.LookupCouponRedemptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.LookupCouponRedemptionResponse:
        member, _code = convert.child_of(request.name, "coupons", "name")
        member = f"members/{member_id_of(member, 'name')}"
        unit = confining_unit()  # authorised like a release: the redeeming unit, or an admin
        found = await self._settled("RedeemCoupon", request.request_id, pb.RedeemCouponResponse)
        if found is None or not found.coupon.name.startswith(f"{member}/"):
            return pb.LookupCouponRedemptionResponse(redeemed=False)
        check_unit(found.coupon.redeemed_unit, unit)
        return pb.LookupCouponRedemptionResponse(redeemed=True, redemption=found)

    async def ReleaseCoupon(
        self, request: pb.ReleaseCouponRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseCouponResponse:
        member, code = convert.child_of(request.name, "coupons", "name")
        member_id = member_id_of(member, "name")
        unit = confining_unit()

        async def work(uow: BenefitsUnitOfWork, now: datetime) -> pb.ReleaseCouponResponse:
            released = await handlers.release_coupon(
                uow, member_id, code, request.reason.strip(), unit, now
            )
            return pb.ReleaseCouponResponse(coupon=convert.coupon_message(released, now))

        return await self._mutate("ReleaseCoupon", request, pb.ReleaseCouponResponse, work)

    # --- rewards catalogue --------------------------------------------------------------------
    async def ListRewards(
        self, request: pb.ListRewardsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRewardsResponse:
        unit = unit_of(request.unit) if request.unit else ""
        filters = {"unit": unit}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        offered = await self._read(lambda uow: handlers.rewards(uow, unit))
        after = [(r, n) for r, n in offered if page.after is None or r.code > page.after]
        response = pb.ListRewardsResponse(
            rewards=[convert.reward_message(r, n) for r, n in after[: page.size]]
        )
        if len(after) > page.size:
            response.next_page_token = next_token(after[page.size - 1][0].code, filters)
        return response

    async def RestockReward(
        self, request: pb.RestockRewardRequest, context: grpc.aio.ServicerContext
    ) -> pb.RestockRewardResponse:
        reward = convert.code_of(request.reward, "reward")
        if request.quantity <= 0:
            raise InvalidArgument.of([FieldViolation("quantity", "must be greater than zero")])
        unit = confining_unit()

        async def work(uow: BenefitsUnitOfWork, _now: datetime) -> pb.RestockRewardResponse:
            found, available = await handlers.restock(uow, reward, request.quantity, unit)
            return pb.RestockRewardResponse(reward=convert.reward_message(found, available))

        return await self._mutate("RestockReward", request, pb.RestockRewardResponse, work)

    async def RunBirthdayGifts(
        self, request: pb.RunBirthdayGiftsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunBirthdayGiftsResponse:
        if not self.fixed_birthday_gifts:
            raise FailedPrecondition(
                "birthday gifts are engagement's birthday journey's: this service grants none "
                "unless LOYALTY_BENEFITS_FIXED_BIRTHDAY_GIFTS is on",
                reason="FIXED_BIRTHDAY_GIFTS_OFF",
            )
        chunks = chunks_of(request, "max_members")
        as_of = moment_of(request, "as_of") or self.clock()
        # A token carries on the walk of one day: it names the day, another day's is refused.
        day = await self._read(lambda uow: handlers.birthday_of(uow, as_of))
        filters = {"birthday": day.isoformat() if day else ""}
        after = convert.member_cursor(request.page_token, filters)
        if request.validate_only:
            due = await self._read(lambda uow: handlers.celebrating_after(uow, as_of, after))
            return pb.RunBirthdayGiftsResponse(remaining=due)
        run = await handlers.run_birthday_gifts(
            self.uow, as_of, chunks.size, after=after, limit=chunks.limit
        )
        response = pb.RunBirthdayGiftsResponse(celebrating=run.celebrating, granted=run.granted)
        if run.after is not None:  # stopped at max_members: maybe some are left
            stopped = run.after
            response.remaining = await self._read(
                lambda uow: handlers.celebrating_after(uow, as_of, stopped)
            )
            if response.remaining:
                response.next_page_token = next_token(stopped, filters)
        return response

    async def RedeemReward(
        self, request: pb.RedeemRewardRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeemRewardResponse:
        member_id = member_id_of(request.member, "member")
        reward = convert.code_of(request.reward, "reward")
        scope = request_scope(SERVICE, "RedeemReward")
        outcome = await self.redemptions.redeem(
            scope, request, request.request_id, member_id, reward
        )
        redemption = outcome.redemption
        described = (
            convert.reward_message(outcome.reward, outcome.available)
            if outcome.reward is not None
            else convert.reward_message_of(redemption)
        )
        return pb.RedeemRewardResponse(
            redemption_id=redemption.redemption_id,
            reward=described,
            points=redemption.points,
            points_posting_id=redemption.posting_id,
            coupon=convert.coupon_message(outcome.coupon, self.clock()),
        )
