"""The CouponOfferService over gRPC: request -> use case -> response.

Creation and claims run through the kit's `run_idempotent` (the answer stored with the
request_id in the same transaction): a retried claim answers the same coupon and claims
nothing more."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import grpc
from loyalty.benefits.v1 import coupon_offers_pb2 as pb
from loyalty.benefits.v1.coupon_offers_pb2_grpc import CouponOfferServiceServicer
from loyalty_kit import audit
from loyalty_kit.caller import confining_unit, current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.resources import member_id_of
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import moment, timestamp

from loyalty_benefits.bootstrap import Benefits
from loyalty_benefits.domain.catalogue import Catalogue
from loyalty_benefits.domain.offers import MAX_AVAILABLE, MAX_PER_MEMBER, CouponOffer, OfferState
from loyalty_benefits.entrypoints import convert
from loyalty_benefits.service_layer import handlers, offers
from loyalty_benefits.service_layer.uow import BenefitsUnitOfWork

SERVICE = "loyalty.benefits.v1.CouponOfferService"
OFFERS = "couponOffers"
STATES = {
    OfferState.SCHEDULED: pb.COUPON_OFFER_STATE_SCHEDULED,
    OfferState.OPEN: pb.COUPON_OFFER_STATE_OPEN,
    OfferState.EXHAUSTED: pb.COUPON_OFFER_STATE_EXHAUSTED,
    OfferState.ENDED: pb.COUPON_OFFER_STATE_ENDED,
}


def offer_message(
    o: CouponOffer, now: datetime, rules: Catalogue | None, member_claimed: int = 0
) -> pb.CouponOffer:
    message = pb.CouponOffer(
        name=f"{OFFERS}/{o.offer_id}",
        template=o.template_code,
        available=o.available,
        per_member_limit=o.per_member_limit,
        claim_start_time=timestamp(o.claim_start),
        claim_end_time=timestamp(o.claim_end),
        minimum_tier=o.minimum_tier,
        issuer_unit=o.issuer_unit,
        claimed=o.claimed,
        remaining=o.remaining,
        state=STATES[o.state_at(now)],
        create_time=timestamp(o.created_at),
        member_claimed=member_claimed,
    )
    template = rules.template(o.template_code) if rules is not None else None
    if template is not None:
        message.coupon_template.CopyFrom(convert.template_message(template))
    return message


def new_offer_of(request: pb.CreateCouponOfferRequest, now: datetime) -> offers.NewOffer:
    """The offer asked for; every bad field at once."""
    offer = request.coupon_offer
    violations: list[FieldViolation] = []
    template = offer.template.strip()
    if not template or len(template) > 64:
        violations.append(
            FieldViolation("coupon_offer.template", "a coupon template's code, required")
        )
    if not 0 < offer.available <= MAX_AVAILABLE:
        violations.append(
            FieldViolation("coupon_offer.available", f"from 1 to {MAX_AVAILABLE:,} coupons")
        )
    if not 0 <= offer.per_member_limit <= MAX_PER_MEMBER:
        violations.append(
            FieldViolation("coupon_offer.per_member_limit", f"from 1 to {MAX_PER_MEMBER} (0: 1)")
        )
    tier = offer.minimum_tier.strip()
    if len(tier) > 64:
        violations.append(FieldViolation("coupon_offer.minimum_tier", "a tier's code"))
    window: list[datetime] = []
    for name in ("claim_start_time", "claim_end_time"):
        if not offer.HasField(name):
            violations.append(FieldViolation(f"coupon_offer.{name}", "required"))
        else:
            window.append(moment(getattr(offer, name), f"coupon_offer.{name}"))
    if len(window) == 2:
        start, end = window
        if end <= start or end <= now:
            violations.append(
                FieldViolation(
                    "coupon_offer.claim_end_time", "after claim_start_time and in the future"
                )
            )
    if violations:
        raise InvalidArgument.of(violations)
    start, end = window
    return offers.NewOffer(template, offer.available, offer.per_member_limit or 1, start, end, tier)


def offer_id_of(name: str, field: str) -> str:
    prefix, _, offer_id = name.partition("/")
    if prefix != OFFERS or not offer_id:
        raise InvalidArgument.of([FieldViolation(field, f"a resource name: {OFFERS}/{{offer_id}}")])
    return convert.uuid_of(offer_id, field)


def state_of(value: int) -> OfferState:
    if value == pb.COUPON_OFFER_STATE_UNSPECIFIED:
        return OfferState.OPEN
    for state, number in STATES.items():
        if number == value:
            return state
    raise InvalidArgument.of([FieldViolation("state", "SCHEDULED, OPEN, EXHAUSTED or ENDED")])


def position_of(after: Any) -> tuple[datetime, str] | None:
    """The position a ListCouponOffers page token carries: the last one's creation and ID."""
    if after is None:
        return None
    try:
        created, offer_id = after
        position = (datetime.fromisoformat(created), str(uuid.UUID(offer_id)))
    except (TypeError, ValueError, AttributeError):
        position = None
    if position is None or position[0].tzinfo is None:
        raise InvalidArgument.of([FieldViolation("page_token", "not a token this list gave")])
    return position


class CouponOfferServicer(UnitOfWorkServicer[BenefitsUnitOfWork], CouponOfferServiceServicer):
    service = SERVICE

    def __init__(self, app: Benefits) -> None:
        super().__init__(app.uow, app.clock)

    async def _described(
        self, uow: BenefitsUnitOfWork, found: list[CouponOffer], member_id: str
    ) -> list[pb.CouponOffer]:
        """The offers as messages, with the template's terms and the member's claims."""
        rules = await uow.catalogue.latest()
        held = await offers.member_claimed(uow, member_id, found) if member_id else {}
        now = self.clock()
        return [offer_message(o, now, rules, held.get(o.offer_id, 0)) for o in found]

    async def CreateCouponOffer(
        self, request: pb.CreateCouponOfferRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCouponOfferResponse:
        new = new_offer_of(request, self.clock())
        issuer = confining_unit()

        async def work(uow: BenefitsUnitOfWork, now: datetime) -> pb.CreateCouponOfferResponse:
            created = await offers.create(uow, new, issuer, now)
            (described,) = await self._described(uow, [created], "")
            audit.note(
                after={"template": created.template_code, "available": created.available},
                target=described.name,
            )
            return pb.CreateCouponOfferResponse(coupon_offer=described)

        return await self._mutate("CreateCouponOffer", request, pb.CreateCouponOfferResponse, work)

    async def GetCouponOffer(
        self, request: pb.GetCouponOfferRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCouponOfferResponse:
        offer_id = offer_id_of(request.name, "name")
        member_id = member_id_of(request.member, "member") if request.member else ""

        async def read(uow: BenefitsUnitOfWork) -> pb.CouponOffer:
            if member_id:
                await handlers.not_merged(uow, member_id)
            (described,) = await self._described(uow, [await offers.get(uow, offer_id)], member_id)
            return described

        return pb.GetCouponOfferResponse(coupon_offer=await self._read(read))

    async def ListCouponOffers(
        self, request: pb.ListCouponOffersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCouponOffersResponse:
        state = state_of(request.state)
        member_id = member_id_of(request.member, "member") if request.member else ""
        # No state asked, a member named: what that member may claim now.
        claimable = bool(member_id) and request.state == pb.COUPON_OFFER_STATE_UNSPECIFIED
        filters: dict[str, Any] = {"state": state.value, "member": member_id}
        if claimable:
            filters["claimable"] = True
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        before = position_of(page.after)
        now = self.clock()

        async def read(
            uow: BenefitsUnitOfWork,
        ) -> tuple[list[pb.CouponOffer], tuple[datetime, str] | None]:
            if member_id:
                await handlers.not_merged(uow, member_id)
            if claimable:
                found = await offers.claimable_page(uow, member_id, now, before, page.size)
                rules = await uow.catalogue.latest()
                described = [
                    offer_message(o, now, rules, found.held[o.offer_id]) for o in found.offers
                ]
                return described, found.resume_after
            listed = await offers.page(uow, state, now, before, page.size + 1)
            more = listed[page.size - 1] if len(listed) > page.size else None
            described = await self._described(uow, listed[: page.size], member_id)
            return described, (more.created_at, more.offer_id) if more else None

        described, resume_after = await self._read(read)
        response = pb.ListCouponOffersResponse(coupon_offers=described)
        if resume_after is not None:
            created, offer_id = resume_after
            response.next_page_token = next_token([created.isoformat(), offer_id], filters)
        return response

    async def ClaimCoupon(
        self, request: pb.ClaimCouponRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClaimCouponResponse:
        offer_id = offer_id_of(request.offer, "offer")
        member_id = member_id_of(request.member, "member")
        # A member's own token claims any offer for itself; a unit's app, its unit's and the
        # group's offers for its members.
        unit = None if current_caller().member else confining_unit()

        async def work(uow: BenefitsUnitOfWork, now: datetime) -> pb.ClaimCouponResponse:
            claimed = await offers.claim(uow, offer_id, member_id, unit, now)
            rules = await uow.catalogue.latest()
            return pb.ClaimCouponResponse(
                coupon=convert.coupon_message(claimed.coupon, now),
                coupon_offer=offer_message(claimed.offer, now, rules, claimed.member_claimed),
            )

        return await self._mutate("ClaimCoupon", request, pb.ClaimCouponResponse, work)
