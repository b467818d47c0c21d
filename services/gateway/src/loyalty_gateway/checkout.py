"""Paying at a checkout with points, a coupon and a benefit: all or nothing (a saga).

The parts are taken one after another, each from its own service: the coupon (benefits), the
benefit (benefits), the points (points). Each step is idempotent by a request id made of the
checkout, its attempt and the step, so asking again never takes twice. When a step is refused,
or its service does not answer, the steps already taken are given back, last first: points
cancelled, consumption released, coupon released. A step whose outcome is unknown is looked
up by its request id (`LookupRedemption`, `LookupConsumption`, `LookupCouponRedemption`: they
never take anything, and wait for a call still in flight): given back if it was taken, simply
not taken if it never was, so a member never sees a redemption and its cancellation they did not
make. Only then is the refusal the answer, and the next call with the same request_id starts a
new attempt; a completed checkout answers every retry with its first answer.

The log in the gateway's database (`checkouts`) is written around the calls, never held open
across them. The attempt's owner renews its lease (`updated_at`) before each step; an attempt
cut short by a stopped gateway stays `running` and is settled once its lease has run out (the
step's deadline and `SETTLE_AFTER_SECONDS`: no call of it can still be in flight then). One
whose give-back could not finish (a service down) is `undoing` and is settled
`SETTLE_AFTER_SECONDS` later. `recover()`, run every few seconds by every gateway replica,
settles both; two replicas settling one attempt at once are safe (lookups take nothing,
give-backs are idempotent by their request ids), and an owner that finds its lease taken over
gives back what it took and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller, current_caller
from loyalty_kit.db import driver_connection
from loyalty_kit.errors import Aborted, DomainError, ErrorKind, InvalidArgument, Violations
from loyalty_kit.idempotency import request_id_reused, request_scope, validate_request_id
from loyalty_kit.jobs import log_round_failed
from loyalty_kit.logs import get_logger
from loyalty_kit.resources import member_id_of, member_name, unit_of
from loyalty_kit.status import error_info, from_rpc_error
from loyalty_kit.uow import UnitOfWork
from loyalty_kit.validation import length_violation

from loyalty_gateway.stubs import Stubs

SERVICE = "loyalty.gateway.v1.GatewayService"
STEPS = ("coupon", "benefit", "points")  # taken in this order, given back in the reverse
# Codes that mean a service decided and took nothing; anything else leaves the outcome unknown.
DEFINITE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# A give-back that finds the part already given back is done.
ALREADY_GIVEN_BACK = {
    "REDEMPTION_ALREADY_CANCELLED",
    "CONSUMPTION_ALREADY_RELEASED",
    "COUPON_NOT_REDEEMED",
}
# An attempt given up by its owner (`undoing`) is settled once this long has passed since: its
# calls have ended, and the services cancel a call whose deadline passed, so none can still
# arrive. A `running` attempt's lease is its step deadline plus this.
SETTLE_AFTER_SECONDS = 2.0
RECOVERY_BATCH = 20
REDEEM_SCOPE = "redeem"
Metadata = tuple[tuple[str, str], ...]
log = get_logger("loyalty.gateway.checkout")


class UndoPending(DomainError):
    kind = ErrorKind.UNAVAILABLE
    reason = "CHECKOUT_UNDO_PENDING"

    def __init__(self, checkout_id: str) -> None:
        super().__init__(
            "a part of this checkout could not be given back yet; the gateway will give it "
            "back shortly, then the request can be retried",
            metadata={"checkout_id": checkout_id, "retry_after_seconds": "5"},
        )


class InProgress(Aborted):
    reason = "CHECKOUT_IN_PROGRESS"

    def __init__(self, checkout_id: str, state: str) -> None:
        super().__init__(
            "this checkout is still being worked on (or given back): retry shortly",
            metadata={"checkout_id": checkout_id, "state": state, "retry_after_seconds": "2"},
        )


@dataclass
class Row:
    checkout_id: str
    client_id: str
    unit: str
    order_id: str
    member_id: str
    attempt: int
    request: pb.RedeemAtCheckoutRequest

    def step_id(self, step: str, undo: bool = False) -> str:
        return f"co.{self.checkout_id}.{self.attempt}:{step}{'-undo' if undo else ''}"

    @property
    def member(self) -> str:
        return member_name(self.member_id)


@dataclass
class Taken:
    """What an attempt took: each step's answer, and the steps whose outcome is unknown."""

    answers: dict[str, Message] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)


def requested(request: pb.RedeemAtCheckoutRequest) -> list[str]:
    wanted = {"coupon": bool(request.coupon), "benefit": bool(request.benefit)}
    wanted["points"] = request.points > 0
    return [step for step in STEPS if wanted[step]]


def check(request: pb.RedeemAtCheckoutRequest) -> None:
    problems = Violations()
    if not request.identity.type or not request.identity.value:
        problems.add("identity", "the member's identity: type and value")
    if too_long := length_violation(request.order_id, "order_id"):
        problems.items.append(too_long)
    if request.points < 0:
        problems.add("points", "0 or more")
    if not requested(request):
        problems.add("points", "something to pay with: points, a coupon or a benefit")
    if request.coupon and not request.order_amount.amount:
        problems.add("order_amount", "required with a coupon: the order's amount before it")
    if request.coupon and ("/" in request.coupon or len(request.coupon) > 64):
        problems.add("coupon", "a coupon code (up to 64 characters, no '/')")
    try:
        validate_request_id(request.request_id)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    problems.raise_if_any()


def _fingerprint(member_id: str, request: pb.RedeemAtCheckoutRequest) -> str:
    """The request as the log keeps it (the member, never the identity used to find them)."""
    body = _stored(request).SerializeToString(deterministic=True)
    return hashlib.sha256(member_id.encode() + b"\0" + body).hexdigest()


def _stored(request: pb.RedeemAtCheckoutRequest) -> pb.RedeemAtCheckoutRequest:
    copy = pb.RedeemAtCheckoutRequest()
    copy.CopyFrom(request)
    copy.ClearField("identity")
    copy.ClearField("request_id")
    return copy


class Checkouts:
    def __init__(
        self,
        stubs: Stubs,
        uow_factory: Callable[[], UnitOfWork],
        deadline_seconds: float,
        credentials: ServiceCredentials,
    ) -> None:
        self.stubs = stubs
        self.uow = uow_factory
        self.deadline = deadline_seconds
        # The job gives back on behalf of the API client that checked out (its client id keeps
        # the services' idempotency records the same); the gateway signs for it.
        self.credentials = credentials

    # -- the call ------------------------------------------------------------------------------

    async def redeem(
        self, request: pb.RedeemAtCheckoutRequest, md: Metadata
    ) -> pb.RedeemAtCheckoutResponse:
        check(request)
        unit = unit_of(request.unit)
        resolved = await self.stubs.identity.ResolveMember(
            identity_pb.ResolveMemberRequest(identity=request.identity),
            metadata=md,
            timeout=self.deadline,
        )
        member_id = member_id_of(resolved.member.name, "member")
        row, answered = await self._begin(request, unit, member_id)
        if answered is not None:
            return answered
        taken = Taken()
        try:
            response = await self._take(row, md, taken)
        except (grpc.aio.AioRpcError, DomainError):
            if not await self._give_back(row, md, taken):
                await self._set_state(row, "undoing")
                raise UndoPending(row.checkout_id) from None
            await self._set_state(row, "open")
            raise
        except asyncio.CancelledError:
            # The caller went away mid-way: the recovery job settles the attempt shortly.
            # (Broken mid-way otherwise, the row stays running until its lease runs out.)
            await asyncio.shield(self._set_state(row, "undoing"))
            raise
        if not await self._set_state(row, "completed", response):
            # Too slow: the recovery job took the attempt over. Give back what was taken (the
            # same request ids as the job's, so nothing twice) and let the caller retry.
            await self._give_back(row, md, taken)
            raise UndoPending(row.checkout_id)
        return response

    async def _begin(
        self, request: pb.RedeemAtCheckoutRequest, unit: str, member_id: str
    ) -> tuple[Row, pb.RedeemAtCheckoutResponse | None]:
        """The log row of this request, now running an attempt; or the first answer."""
        caller = current_caller()
        scope = request_scope(SERVICE, "RedeemAtCheckout")
        printed = _fingerprint(member_id, request)
        async with self.uow() as uow:
            conn = await driver_connection(uow.session)
            found = await conn.fetchrow(
                "INSERT INTO checkouts (checkout_id, scope, request_id, fingerprint, client_id, "
                "unit, order_id, member_id, request, state) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'running') "
                "ON CONFLICT (scope, request_id) DO NOTHING RETURNING checkout_id, attempt",
                uuid.uuid4(),
                scope,
                request.request_id,
                printed,
                caller.client_id,
                unit,
                request.order_id.strip(),
                member_id,
                _stored(request).SerializeToString(deterministic=True),
            )
            if found is None:
                existing = await conn.fetchrow(
                    "SELECT checkout_id, fingerprint, state, attempt, response "
                    "FROM checkouts WHERE scope = $1 AND request_id = $2 FOR UPDATE",
                    scope,
                    request.request_id,
                )
                assert existing is not None  # rows are never deleted
                if existing["fingerprint"] != printed:
                    raise request_id_reused(request.request_id)
                if existing["state"] in ("completed", "refunded"):
                    answered = pb.RedeemAtCheckoutResponse()
                    answered.ParseFromString(existing["response"])
                    return self._row(existing, unit, member_id, request), answered
                if existing["state"] != "open":
                    # Running elsewhere, or being settled: the recovery job settles an attempt
                    # whose owner is gone within seconds of its lease running out.
                    raise InProgress(str(existing["checkout_id"]), existing["state"])
                found = await conn.fetchrow(
                    "UPDATE checkouts SET attempt = attempt + 1, state = 'running', "
                    "updated_at = now() WHERE checkout_id = $1 RETURNING checkout_id, attempt",
                    existing["checkout_id"],
                )
            await uow.commit()
        assert found is not None
        return self._row(found, unit, member_id, request), None

    @staticmethod
    def _row(found: Any, unit: str, member_id: str, request: pb.RedeemAtCheckoutRequest) -> Row:
        return Row(
            checkout_id=str(found["checkout_id"]),
            client_id=current_caller().client_id,
            unit=unit,
            order_id=request.order_id.strip(),
            member_id=member_id,
            attempt=int(found["attempt"]),
            request=_stored(request),
        )

    async def _set_state(
        self, row: Row, state: str, response: pb.RedeemAtCheckoutResponse | None = None
    ) -> bool:
        """Move this attempt on; completing only while it still runs (False: the recovery
        job took it over, and gives it back)."""
        async with self.uow() as uow:
            conn = await driver_connection(uow.session)
            moved = await conn.fetchval(
                "UPDATE checkouts SET state = $2, response = $3, updated_at = now() "
                "WHERE checkout_id = $1 AND attempt = $4 "
                "AND (state = 'running' OR $2 <> 'completed') RETURNING true",
                uuid.UUID(row.checkout_id),
                state,
                response.SerializeToString(deterministic=True) if response else None,
                row.attempt,
            )
            await uow.commit()
        return bool(moved)

    # -- taking ----------------------------------------------------------------------------

    async def _renew(self, row: Row) -> bool:
        """Renew this attempt's lease before a step; False if the recovery job took it over."""
        async with self.uow() as uow:
            conn = await driver_connection(uow.session)
            renewed = await conn.fetchval(
                "UPDATE checkouts SET updated_at = now() "
                "WHERE checkout_id = $1 AND attempt = $2 AND state = 'running' RETURNING true",
                uuid.UUID(row.checkout_id),
                row.attempt,
            )
            await uow.commit()
        return bool(renewed)

    async def _take(self, row: Row, md: Metadata, taken: Taken) -> pb.RedeemAtCheckoutResponse:
        for index, step in enumerate(requested(row.request)):
            if index and not await self._renew(row):  # (_begin has just set it for the first)
                raise UndoPending(row.checkout_id)
            try:
                taken.answers[step] = await self._step(row, step, md)
            except grpc.aio.AioRpcError as error:
                if error.code() not in DEFINITE:
                    taken.unknown.add(step)
                raise
        response = pb.RedeemAtCheckoutResponse(member=row.member)
        coupon = taken.answers.get("coupon")
        if isinstance(coupon, benefits_pb.RedeemCouponResponse):
            response.coupon.CopyFrom(coupon.coupon)
            response.coupon_discount.CopyFrom(coupon.discount)
        consumed = taken.answers.get("benefit")
        if isinstance(consumed, benefits_pb.ConsumeBenefitResponse):
            response.consumption.CopyFrom(consumed.consumption)
        spent = taken.answers.get("points")
        if isinstance(spent, points_pb.RedeemPointsResponse):
            response.points_posting.CopyFrom(spent.posting)
            response.points_value.CopyFrom(spent.value)
            response.balance.CopyFrom(spent.balance)
        else:
            with contextlib.suppress(grpc.aio.AioRpcError):  # a best-effort extra
                balance = await self.stubs.points.GetBalance(
                    points_pb.GetBalanceRequest(member=row.member), metadata=md, timeout=5
                )
                response.balance.CopyFrom(balance.balance)
        return response

    async def _step(self, row: Row, step: str, md: Metadata) -> Message:
        """Take one part (or, asked again with the same request id, learn what was taken)."""
        request, stubs = row.request, self.stubs
        if step == "coupon":
            coupon: Message = await stubs.benefits.RedeemCoupon(
                benefits_pb.RedeemCouponRequest(
                    name=f"{row.member}/coupons/{request.coupon}",
                    request_id=row.step_id(step),
                    unit=row.unit,
                    order_id=row.order_id,
                    order_amount=request.order_amount,
                ),
                metadata=md,
                timeout=self.deadline,
            )
            return coupon
        if step == "benefit":
            consumed: Message = await stubs.benefits.ConsumeBenefit(
                benefits_pb.ConsumeBenefitRequest(
                    member=row.member,
                    request_id=row.step_id(step),
                    benefit=request.benefit,
                    unit=row.unit,
                    order_id=row.order_id,
                ),
                metadata=md,
                timeout=self.deadline,
            )
            return consumed
        spent: Message = await stubs.points.RedeemPoints(
            points_pb.RedeemPointsRequest(
                member=row.member,
                request_id=row.step_id(step),
                unit=row.unit,
                channel=request.channel,
                points=request.points,
                order_id=row.order_id,
            ),
            metadata=md,
            timeout=self.deadline,
        )
        return spent

    # -- giving back -----------------------------------------------------------------------

    async def _give_back(self, row: Row, md: Metadata, taken: Taken) -> bool:
        """Give back every part taken (or perhaps taken); True when all are back."""
        whole = True
        for step in reversed(requested(row.request)):
            answer = taken.answers.get(step)
            try:
                if answer is None and step in taken.unknown:
                    answer = await self._lookup(row, step, md)  # never takes anything
                if answer is not None:
                    await give_back(
                        self.stubs, step, answer, row.member, row.step_id(step, undo=True), md
                    )
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "checkout give-back failed",
                    checkout_id=row.checkout_id,
                    step=step,
                    code=error.code().name,
                )
                whole = False
        return whole

    async def _lookup(self, row: Row, step: str, md: Metadata) -> Message | None:
        """What a step took, asked of its service by the step's request id without taking
        anything (a call still in flight is waited for); None if it never took anything."""
        request_id, stubs = row.step_id(step), self.stubs
        if step == "coupon":
            coupon = await stubs.benefits.LookupCouponRedemption(
                benefits_pb.LookupCouponRedemptionRequest(
                    name=f"{row.member}/coupons/{row.request.coupon}", request_id=request_id
                ),
                metadata=md,
                timeout=self.deadline,
            )
            return coupon.redemption if coupon.redeemed else None
        if step == "benefit":
            consumed = await stubs.benefits.LookupConsumption(
                benefits_pb.LookupConsumptionRequest(member=row.member, request_id=request_id),
                metadata=md,
                timeout=self.deadline,
            )
            return consumed.consumption if consumed.consumed else None
        spent = await stubs.points.LookupRedemption(
            points_pb.LookupRedemptionRequest(member=row.member, request_id=request_id),
            metadata=md,
            timeout=self.deadline,
        )
        return spent.redemption if spent.redeemed else None

    async def recover(self, limit: int = RECOVERY_BATCH) -> int:
        """Settle attempts whose owner gave up (`undoing`) or is gone (`running`, its lease run
        out): each part is looked up and given back if taken. How many are now settled."""
        async with self.uow() as uow:
            conn = await driver_connection(uow.session)
            rows = await conn.fetch(
                "UPDATE checkouts SET state = 'undoing', updated_at = now() "
                "WHERE checkout_id IN (SELECT checkout_id FROM checkouts "
                "  WHERE (state = 'undoing' AND updated_at < now() - make_interval(secs => $1)) "
                "  OR (state = 'running' AND updated_at < now() - make_interval(secs => $2)) "
                "  ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED) "
                "RETURNING checkout_id, client_id, unit, order_id, member_id, attempt, request",
                SETTLE_AFTER_SECONDS,
                self.deadline + SETTLE_AFTER_SECONDS,
                limit,
            )
            await uow.commit()
        settled = await asyncio.gather(*(self._settle(found) for found in rows))
        return sum(settled)

    async def _settle(self, found: Any) -> bool:
        request = pb.RedeemAtCheckoutRequest()
        request.ParseFromString(found["request"])
        row = Row(
            checkout_id=str(found["checkout_id"]),
            client_id=found["client_id"],
            unit=found["unit"],
            order_id=found["order_id"],
            member_id=found["member_id"],
            attempt=int(found["attempt"]),
            request=request,
        )
        caller = Caller(unit=row.unit, client_id=row.client_id, scopes=frozenset({REDEEM_SCOPE}))
        taken = Taken(unknown=set(requested(request)))
        if not await self._give_back(row, self.credentials.metadata(caller), taken):
            return False  # still undoing: the next round tries again
        await self._set_state(row, "open")
        log.info("checkout settled", checkout_id=row.checkout_id)
        return True

    async def recover_forever(self, stopping: asyncio.Event, every: float = 2.0) -> None:
        while not stopping.is_set():
            try:
                await self.recover()
            except Exception as error:
                log_round_failed(log, "checkout recovery", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)


async def give_back(
    stubs: Stubs,
    step: str,
    answer: object,
    member: str,
    request_id: str,
    md: Metadata,
    why: str = "checkout not completed",
) -> Message | None:
    """Give one taken part back: the service's answer, or None if it was back already."""
    try:
        if step == "points":
            assert isinstance(answer, points_pb.RedeemPointsResponse)
            cancelled: Message = await stubs.points.CancelRedemption(
                points_pb.CancelRedemptionRequest(
                    member=member,
                    request_id=request_id,
                    posting_id=answer.posting.posting_id,
                    reason=why,
                ),
                metadata=md,
                timeout=10,
            )
            return cancelled
        if step == "benefit":
            assert isinstance(answer, benefits_pb.ConsumeBenefitResponse)
            released: Message = await stubs.benefits.ReleaseConsumption(
                benefits_pb.ReleaseConsumptionRequest(
                    name=answer.consumption.name,
                    request_id=request_id,
                    reason=why,
                ),
                metadata=md,
                timeout=10,
            )
            return released
        assert isinstance(answer, benefits_pb.RedeemCouponResponse)
        freed: Message = await stubs.benefits.ReleaseCoupon(
            benefits_pb.ReleaseCouponRequest(
                name=answer.coupon.name, request_id=request_id, reason=why
            ),
            metadata=md,
            timeout=10,
        )
        return freed
    except grpc.aio.AioRpcError as error:
        if reason_of(error) not in ALREADY_GIVEN_BACK:
            raise
        return None


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = from_rpc_error(error)
    info = error_info(status) if status is not None else None
    return info.reason if info else ""
