"""The PointsService over gRPC: request -> command -> handler -> response.

Mutations run through the kit's `run_idempotent`: the response is stored with the request_id in
the same transaction, so a retry returns the first answer (the balance as it was then)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import grpc
from loyalty.common.v1 import money_pb2
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty.points.v1.points_service_pb2_grpc import PointsServiceServicer
from loyalty_kit import audit
from loyalty_kit.caller import check_unit, confining_unit
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.idempotency import fingerprint
from loyalty_kit.jobs import chunks_of
from loyalty_kit.money import money
from loyalty_kit.pagination import next_token, read_page, read_token
from loyalty_kit.resources import member_id_of, member_name, unit_of
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import moment, moment_of, timestamp
from loyalty_kit.validation import enum_value

from loyalty_points.bootstrap import Points
from loyalty_points.domain.errors import NoProgramme
from loyalty_points.domain.ledger import NEVER, LotRecord, Posting
from loyalty_points.domain.programme import Programme
from loyalty_points.domain.referral_codes import code_of as referral_code_of
from loyalty_points.domain.referral_codes import masked_member
from loyalty_points.entrypoints import convert
from loyalty_points.service_layer import (
    accounts,
    activities,
    earning,
    jobs,
    moves,
    programmes,
    referrals,
    spending,
)
from loyalty_points.service_layer.earning import Earn
from loyalty_points.service_layer.settlement import settlement
from loyalty_points.service_layer.uow import PointsUnitOfWork

SERVICE = "loyalty.points.v1.PointsService"


def _lot_position(after: Any) -> tuple[datetime, datetime, str] | None:
    """The position a ListLots page token carries: the last lot's expiry, earn time and ID."""
    if after is None:
        return None
    try:
        expires, earned, lot_id = after
        position = (datetime.fromisoformat(expires), datetime.fromisoformat(earned), str(lot_id))
        uuid.UUID(lot_id)
    except (TypeError, ValueError, AttributeError):
        position = None
    if position is None or position[0].tzinfo is None or position[1].tzinfo is None:
        raise InvalidArgument.of([FieldViolation("page_token", "not a token this list gave")])
    return position


def referral_position(after: Any) -> tuple[datetime, str] | None:
    """The position a ListReferrals page token carries: the last referral's time and member."""
    if after is None:
        return None
    try:
        recorded, member_id = after
        position = (datetime.fromisoformat(recorded), str(uuid.UUID(member_id)))
    except (TypeError, ValueError, AttributeError):
        position = None
    if position is None or position[0].tzinfo is None:
        raise InvalidArgument.of([FieldViolation("page_token", "not a token this list gave")])
    return position


class PointsServicer(UnitOfWorkServicer[PointsUnitOfWork], PointsServiceServicer):
    service = SERVICE

    def __init__(self, app: Points) -> None:
        super().__init__(app.uow, app.clock)
        self.directory = app.directory

    # --- earning ------------------------------------------------------------------------------
    def _earn_command(self, request: pb.EarnPointsRequest | pb.PreviewEarnRequest) -> Earn:
        now = self.clock()
        return Earn(
            member_id=member_id_of(request.member, "member"),
            unit=unit_of(request.unit),
            channel=(
                convert.channel_name(request.channel)
                if isinstance(request, pb.EarnPointsRequest)
                else "CHANNEL_UNSPECIFIED"
            ),
            order_id=request.order_id.strip() if isinstance(request, pb.EarnPointsRequest) else "",
            lines=convert.lines_from(request.lines),
            occurred_at=moment_of(request, "occur_time") or now,
        )

    async def EarnPoints(
        self, request: pb.EarnPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.EarnPointsResponse:
        command = self._earn_command(request)

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.EarnPointsResponse:
            posting, account = await earning.earn(uow, command, self.directory, now)
            view = await accounts.view(uow.ledger, account, now)
            return pb.EarnPointsResponse(
                posting=convert.posting(posting), balance=convert.balance(view)
            )

        return await self._mutate("EarnPoints", request, pb.EarnPointsResponse, work)

    async def PreviewEarn(
        self, request: pb.PreviewEarnRequest, context: grpc.aio.ServicerContext
    ) -> pb.PreviewEarnResponse:
        command = self._earn_command(request)
        earned, available_at = await self._read(
            lambda uow: earning.preview(uow, command, self.directory, self.clock())
        )
        response = pb.PreviewEarnResponse(
            breakdown=convert.earned_breakdown(earned), pending=available_at is not None
        )
        if available_at is not None:
            response.available_time.CopyFrom(timestamp(available_at))
        return response

    # --- spending -----------------------------------------------------------------------------
    async def RedeemPoints(
        self, request: pb.RedeemPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeemPointsResponse:
        member_id = member_id_of(request.member, "member")
        unit = unit_of(request.unit)
        channel = convert.channel_name(request.channel)

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.RedeemPointsResponse:
            posting, account, programme = await spending.redeem(
                uow,
                member_id,
                unit,
                channel,
                request.points,
                request.order_id.strip(),
                self.directory,
                now,
            )
            currency = request.currency_code or programme.base_currency
            if currency not in programme.currencies:
                raise InvalidArgument.of(
                    [FieldViolation("currency_code", "a currency of the programme")]
                )
            view = await accounts.view(uow.ledger, account, now)
            return pb.RedeemPointsResponse(
                posting=convert.posting(posting),
                balance=convert.balance(view),
                value=money(programme.value_of(request.points, currency), currency),
            )

        return await self._mutate("RedeemPoints", request, pb.RedeemPointsResponse, work)

    async def ReverseEarn(
        self, request: pb.ReverseEarnRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReverseEarnResponse:
        member_id = member_id_of(request.member, "member")
        unit = unit_of(request.unit)

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.ReverseEarnResponse:
            posting, account = await earning.reverse(
                uow,
                member_id,
                unit,
                request.order_id.strip(),
                list(request.line_ids),
                request.reason,
                now,
            )
            view = await accounts.view(uow.ledger, account, now)
            return pb.ReverseEarnResponse(
                posting=convert.posting(posting), balance=convert.balance(view)
            )

        return await self._mutate("ReverseEarn", request, pb.ReverseEarnResponse, work)

    async def CancelRedemption(
        self, request: pb.CancelRedemptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelRedemptionResponse:
        member_id = member_id_of(request.member, "member")
        confined_to = confining_unit()

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.CancelRedemptionResponse:
            posting, expired, account = await spending.cancel_redemption(
                uow, member_id, request.posting_id.strip(), request.reason, now, confined_to
            )
            view = await accounts.view(uow.ledger, account, now)
            return pb.CancelRedemptionResponse(
                posting=convert.posting(posting),
                expired_points=expired,
                balance=convert.balance(view),
            )

        _uuid_field(request.posting_id, "posting_id")
        return await self._mutate("CancelRedemption", request, pb.CancelRedemptionResponse, work)

    async def LookupRedemption(
        self, request: pb.LookupRedemptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.LookupRedemptionResponse:
        """A RedeemPoints answer by its request_id, never redeeming: authorised like a
        cancellation (the redeem scope; a unit sees only its own redemptions, an admin any)."""
        member_id = member_id_of(request.member, "member")
        confined_to = confining_unit()
        found = await self._settled("RedeemPoints", request.request_id, pb.RedeemPointsResponse)
        if found is None or found.posting.member_id != member_id:
            return pb.LookupRedemptionResponse(redeemed=False)
        check_unit(found.posting.unit, confined_to)
        return pb.LookupRedemptionResponse(redeemed=True, redemption=found)

    async def AdjustPoints(
        self, request: pb.AdjustPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdjustPointsResponse:
        member_id = member_id_of(request.member, "member")
        unit = unit_of(request.unit)

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.AdjustPointsResponse:
            posting, account = await spending.adjust(
                uow, member_id, unit, request.points, request.reason, self.directory, now
            )
            view = await accounts.view(uow.ledger, account, now)
            return pb.AdjustPointsResponse(
                posting=convert.posting(posting), balance=convert.balance(view)
            )

        return await self._mutate("AdjustPoints", request, pb.AdjustPointsResponse, work)

    async def ConfirmOrder(
        self, request: pb.ConfirmOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmOrderResponse:
        member_id = member_id_of(request.member, "member")
        unit = unit_of(request.unit)

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.ConfirmOrderResponse:
            activated, account = await earning.confirm_order(
                uow, member_id, unit, request.order_id.strip(), now
            )
            view = await accounts.view(uow.ledger, account, now)
            return pb.ConfirmOrderResponse(
                activated_points=activated, balance=convert.balance(view)
            )

        return await self._mutate("ConfirmOrder", request, pb.ConfirmOrderResponse, work)

    async def TransferPoints(
        self, request: pb.TransferPointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransferPointsResponse:
        member_id = member_id_of(request.member, "member")
        to_member_id = member_id_of(request.to_member, "to_member")

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.TransferPointsResponse:
            posting, account = await moves.transfer(
                uow, member_id, to_member_id, request.points, request.reason, self.directory, now
            )
            view = await accounts.view(uow.ledger, account, now)
            return pb.TransferPointsResponse(
                posting=convert.posting(posting), balance=convert.balance(view)
            )

        return await self._mutate("TransferPoints", request, pb.TransferPointsResponse, work)

    async def ExchangeToPartner(
        self, request: pb.ExchangeToPartnerRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExchangeToPartnerResponse:
        member_id = member_id_of(request.member, "member")

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.ExchangeToPartnerResponse:
            posting, units, account = await moves.exchange_to_partner(
                uow,
                member_id,
                request.partner.strip(),
                request.points,
                request.partner_account,
                self.directory,
                now,
            )
            view = await accounts.view(uow.ledger, account, now)
            return pb.ExchangeToPartnerResponse(
                posting=convert.posting(posting),
                partner_units=units,
                balance=convert.balance(view),
            )

        return await self._mutate("ExchangeToPartner", request, pb.ExchangeToPartnerResponse, work)

    async def ExchangeFromPartner(
        self, request: pb.ExchangeFromPartnerRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExchangeFromPartnerResponse:
        member_id = member_id_of(request.member, "member")

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.ExchangeFromPartnerResponse:
            posting, account = await moves.exchange_from_partner(
                uow,
                member_id,
                request.partner.strip(),
                request.partner_units,
                request.partner_reference,
                self.directory,
                now,
            )
            view = await accounts.view(uow.ledger, account, now)
            return pb.ExchangeFromPartnerResponse(
                posting=convert.posting(posting), balance=convert.balance(view)
            )

        return await self._mutate(
            "ExchangeFromPartner", request, pb.ExchangeFromPartnerResponse, work
        )

    async def ReversePartnerExchange(
        self, request: pb.ReversePartnerExchangeRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReversePartnerExchangeResponse:
        member_id = member_id_of(request.member, "member")
        _uuid_field(request.posting_id, "posting_id")

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.ReversePartnerExchangeResponse:
            posting, expired, account = await moves.reverse_partner_exchange(
                uow, member_id, request.posting_id.strip(), request.reason, now
            )
            view = await accounts.view(uow.ledger, account, now)
            return pb.ReversePartnerExchangeResponse(
                posting=convert.posting(posting),
                expired_points=expired,
                balance=convert.balance(view),
            )

        return await self._mutate(
            "ReversePartnerExchange", request, pb.ReversePartnerExchangeResponse, work
        )

    async def RecordReferral(
        self, request: pb.RecordReferralRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordReferralResponse:
        member_id = member_id_of(request.member, "member")
        if bool(request.referrer.strip()) == bool(request.referral_code.strip()):
            named = "referral_code" if request.referrer.strip() else "referrer"
            raise InvalidArgument.of(
                [FieldViolation(named, "exactly one of referrer and referral_code")]
            )
        referrer_id = member_id_of(request.referrer, "referrer") if request.referrer else ""
        code = referral_code_of(request.referral_code) if request.referral_code else ""

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.RecordReferralResponse:
            referrer_id_now = referrer_id or await referrals.referrer_of(uow, code, self.directory)
            referrer, rewarded = await earning.record_referral(
                uow, member_id, referrer_id_now, self.directory, now
            )
            return pb.RecordReferralResponse(referrer_member_id=referrer, rewarded=rewarded)

        return await self._mutate("RecordReferral", request, pb.RecordReferralResponse, work)

    async def GetReferralCode(
        self, request: pb.GetReferralCodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReferralCodeResponse:
        member_id = member_id_of(request.member, "member")
        async with self.uow() as uow:  # committed: the code may be made by this call
            code, made = await referrals.referral_code(uow, member_id, self.directory, self.clock())
            await uow.commit()
        return pb.GetReferralCodeResponse(
            referral_code=pb.ReferralCode(
                member=member_name(member_id), code=code, create_time=timestamp(made)
            )
        )

    async def ListReferrals(
        self, request: pb.ListReferralsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReferralsResponse:
        member_id = member_id_of(request.member, "member")
        filters = {"member": member_id}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        before = referral_position(page.after)
        found = await self._read(
            lambda uow: referrals.referrals_by(
                uow, member_id, self.directory, before, page.size + 1
            )
        )
        response = pb.ListReferralsResponse()
        for made in found[: page.size]:
            referral = response.referrals.add(
                referred_member=masked_member(made.member_id),
                record_time=timestamp(made.recorded_at),
                rewarded=made.rewarded_at is not None,
                points=made.points,
            )
            if made.rewarded_at is not None:
                referral.reward_time.CopyFrom(timestamp(made.rewarded_at))
        if len(found) > page.size:
            last = found[page.size - 1]
            response.next_page_token = next_token(
                [last.recorded_at.isoformat(), last.member_id], filters
            )
        return response

    # --- behaviour points -----------------------------------------------------------------------
    async def RecordActivity(
        self, request: pb.RecordActivityRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordActivityResponse:
        """Idempotent by the unit and activity ID (not the caller's request_id: two clients of
        one unit share the unit's activity IDs), kept in the activities table itself."""
        command = activities.Record(
            member_id=member_id_of(request.member, "member"),
            unit=unit_of(request.unit),
            activity_type=request.activity_type.strip(),
            activity_id=request.activity_id.strip(),
            occurred_at=moment_of(request, "occur_time"),
            fingerprint=fingerprint(request, ignore=()),
            attributes=dict(request.attributes),
        )
        recorded = await activities.record_once(self.uow, command, self.directory, self.clock)
        return pb.RecordActivityResponse(activity=convert.activity(recorded))

    # --- reads --------------------------------------------------------------------------------
    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalanceResponse:
        member_id = member_id_of(request.member, "member")
        view = await self._read(
            lambda uow: accounts.balance(
                uow.ledger, member_id, request.expiring_within_days, self.directory, self.clock()
            )
        )
        return pb.GetBalanceResponse(balance=convert.balance(view))

    async def ListPostings(
        self, request: pb.ListPostingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPostingsResponse:
        member_id = member_id_of(request.member, "member")
        enum_value(pb.PostingKind.values(), request.kind, "kind", unspecified_ok=True)
        kind = next((k for k, v in convert.KINDS.items() if v == request.kind), None)
        start = moment_of(request, "start_time")
        end = moment_of(request, "end_time")
        filters = {
            "member": member_id,
            "unit": request.unit,
            "kind": int(request.kind),
            "start": start.isoformat() if start else "",
            "end": end.isoformat() if end else "",
        }
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)

        async def statement(uow: PointsUnitOfWork) -> list[Posting]:
            await accounts.readable_account(uow.ledger, member_id, self.directory)
            return await uow.ledger.statement(
                member_id,
                before_seq=page.after,
                limit=page.size + 1,
                unit=request.unit.strip(),
                kind=kind,
                start=start,
                end=end,
            )

        postings = await self._read(statement)
        response = pb.ListPostingsResponse(
            postings=[convert.posting(p) for p in postings[: page.size]]
        )
        if len(postings) > page.size:
            response.next_page_token = next_token(postings[page.size - 1].seq, filters)
        return response

    async def ListLots(
        self, request: pb.ListLotsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLotsResponse:
        member_id = member_id_of(request.member, "member")
        expire_before = moment_of(request, "expire_before")
        unit = request.unit.strip()
        filters = {
            "member": member_id,
            "unit": unit,
            "expire_before": expire_before.isoformat() if expire_before else "",
            "show_empty": request.show_empty,
        }
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)
        after = _lot_position(page.after)

        async def lots(uow: PointsUnitOfWork) -> list[LotRecord]:
            await accounts.readable_account(uow.ledger, member_id, self.directory)
            return await uow.ledger.lot_page(
                member_id,
                after=after,
                limit=page.size + 1,
                unit=unit,
                expire_before=expire_before,
                show_empty=request.show_empty,
            )

        found = await self._read(lots)
        response = pb.ListLotsResponse(lots=[convert.lot(r) for r in found[: page.size]])
        if len(found) > page.size:
            last = found[page.size - 1].lot
            position = [(last.expires_at or NEVER).isoformat(), last.earned_at.isoformat()]
            response.next_page_token = next_token([*position, last.lot_id], filters)
        return response

    async def GetSettlement(
        self, request: pb.GetSettlementRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSettlementResponse:
        if not request.HasField("start_time") or not request.HasField("end_time"):
            raise InvalidArgument.of(
                [FieldViolation("start_time", "required"), FieldViolation("end_time", "required")]
            )
        start = moment(request.start_time, "start_time")
        end = moment(request.end_time, "end_time")
        result = await self._read(lambda uow: settlement(uow, start, end, self.clock()))
        programme = result.programme
        if programme is None:
            raise NoProgramme()  # no programme, no currency to value points in
        base = programme.base_currency

        def value(points: int) -> money_pb2.Money:
            return money(programme.value_of(points, base), base)

        return pb.GetSettlementResponse(
            units=[
                pb.UnitSettlement(
                    unit=unit,
                    points_issued=f.issued,
                    points_redeemed=f.redeemed,
                    value_issued=value(f.issued),
                    value_redeemed=value(f.redeemed),
                    points_expired=f.expired,
                    points_forfeited=f.forfeited,
                )
                for unit, f in sorted(result.units.items())
            ],
            flows=[
                pb.SettlementFlow(
                    earned_unit=earned, redeemed_unit=redeemed, points=points, value=value(points)
                )
                for earned, redeemed, points in sorted(result.flows)
            ],
            ledger_points=result.ledger_points,
        )

    # --- programme and jobs (admin) -----------------------------------------------------------
    async def GetProgramme(
        self, request: pb.GetProgrammeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProgrammeResponse:
        async def work(uow: PointsUnitOfWork) -> Programme:
            if request.version:
                found = await uow.ledger.programme_version(request.version)
                if found is None:
                    raise InvalidArgument.of([FieldViolation("version", "no such version")])
                return found
            return await accounts.programme_at(uow.ledger, self.clock())

        return pb.GetProgrammeResponse(programme=convert.programme_message(await self._read(work)))

    async def UpdateProgramme(
        self, request: pb.UpdateProgrammeRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateProgrammeResponse:
        programme = convert.programme_from(request.programme, self.clock())

        async def work(uow: PointsUnitOfWork, now: datetime) -> pb.UpdateProgrammeResponse:
            stored = await programmes.publish_programme(uow, programme, request.reason, now)
            audit.note(after={"version": stored.version})
            return pb.UpdateProgrammeResponse(programme=convert.programme_message(stored))

        return await self._mutate("UpdateProgramme", request, pb.UpdateProgrammeResponse, work)

    async def RunPendingActivation(
        self, request: pb.RunPendingActivationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunPendingActivationResponse:
        chunks = chunks_of(request, "max_members")
        now = self.clock()
        as_of = moment_of(request, "as_of") or now
        total = jobs.JobResult()
        if not request.validate_only:
            total = await jobs.run_in_chunks(
                self.uow,
                lambda uow, size: jobs.activate_pending_chunk(uow, as_of, size, now),
                chunks,
            )
        return pb.RunPendingActivationResponse(
            postings_activated=total.items,
            points_activated=total.points,
            remaining=await self._read(lambda uow: jobs.members_due_activation(uow, as_of)),
        )

    async def RunExpiry(
        self, request: pb.RunExpiryRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunExpiryResponse:
        chunks = chunks_of(request, "max_members")
        now = self.clock()
        as_of = moment_of(request, "as_of") or now
        total = jobs.JobResult()
        if not request.validate_only:
            total = await jobs.run_in_chunks(
                self.uow, lambda uow, size: jobs.expire_chunk(uow, as_of, size, now), chunks
            )
        return pb.RunExpiryResponse(
            members_expired=total.members,
            lots_expired=total.items,
            points_expired=total.points,
            remaining=await self._read(lambda uow: jobs.members_due_expiry(uow, as_of)),
        )

    async def RepublishLedger(
        self, request: pb.RepublishLedgerRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepublishLedgerResponse:
        chunks = chunks_of(request, "max_members")
        after = _republish_position(request.page_token)
        if request.validate_only:
            return pb.RepublishLedgerResponse(
                remaining=await self._read(lambda uow: uow.ledger.count_members_after(after))
            )
        done = await jobs.republish_ledger(self.uow, after, chunks)
        remaining = (
            await self._read(lambda uow: uow.ledger.count_members_after(done.after))
            if done.after is not None
            else 0
        )
        return pb.RepublishLedgerResponse(
            members_published=done.members,
            postings_published=done.postings,
            movements_published=done.movements,
            remaining=remaining,
            next_page_token=next_token(done.after, REPUBLISH) if remaining else "",
        )


REPUBLISH = {"job": "republishLedger"}  # what its page tokens are tied to


def _republish_position(page_token: str) -> str | None:
    """The member a RepublishLedger token carries on after (None: from the first)."""
    after = read_token(page_token, REPUBLISH)
    if after is None:
        return None
    if not isinstance(after, str):
        raise InvalidArgument.of([FieldViolation("page_token", "not a token this job gave")])
    _uuid_field(after, "page_token", "not a token this job gave")
    return after


def _uuid_field(value: str, field: str, what: str = "a posting id") -> None:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidArgument.of([FieldViolation(field, what)]) from None
