"""Paying at a checkout with points, a coupon and a benefit: all or nothing (a saga).

The parts are taken one after another, each from its own service: the coupon (benefits), the
benefit (benefits), the points (points) (`parts.py`). Each step is idempotent by a request id
made of the checkout, its attempt and the step, so asking again never takes twice. When a step
is refused, or its service does not answer, the steps already taken are given back, last
first: points cancelled, consumption released, coupon released. A step whose outcome is unknown
is looked up by its request id (`LookupRedemption`, `LookupConsumption`,
`LookupCouponRedemption`: they never take anything, and wait for a call still in flight): given
back if it was taken, simply not taken if it never was, so a member never sees a redemption and
its cancellation they did not make. Only then is the refusal the answer, and the next call with
the same request_id starts a new attempt; a completed checkout answers every retry with its
first answer.

The log in the gateway's database (`adapters/checkout_log.py`) is written around the calls,
never held open across them. The attempt's owner renews its lease (`updated_at`) before each
step; an attempt cut short by a stopped gateway stays `running` and is settled once its lease
has run out (the step's deadline and `SETTLE_AFTER_SECONDS`: no call of it can still be in
flight then). One whose give-back could not finish (a service down) is `undoing` and is settled
`SETTLE_AFTER_SECONDS` later. `recover()`, run every few seconds by every gateway replica,
settles both; two replicas settling one attempt at once are safe (lookups take nothing,
give-backs are idempotent by their request ids), and an owner that finds its lease taken over
gives back what it took and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller, current_caller
from loyalty_kit.errors import DomainError
from loyalty_kit.idempotency import request_id_reused
from loyalty_kit.jobs import log_round_failed
from loyalty_kit.logs import get_logger
from loyalty_kit.resources import member_id_of, unit_of
from loyalty_kit.status import definite
from loyalty_kit.uow import UnitOfWork

from loyalty_gateway.adapters.checkout_log import Attempt, CheckoutLog
from loyalty_gateway.adapters.services import Call, Metadata, Services
from loyalty_gateway.flows.checks import check_checkout
from loyalty_gateway.flows.errors import InProgress, UndoPending
from loyalty_gateway.flows.parts import BY_NAME, POINTS, give_back, requested
from loyalty_gateway.flows.service import method, scope_of

# An attempt given up by its owner (`undoing`) is settled once this long has passed since: its
# calls have ended, and the services cancel a call whose deadline passed, so none can still
# arrive. A `running` attempt's lease is its step deadline plus this.
SETTLE_AFTER_SECONDS = 2.0
RECOVERY_BATCH = 20
REDEEM_SCOPE = "redeem"
BALANCE_SECONDS = 5.0  # the balance shown after a checkout without points: a best-effort extra
log = get_logger("loyalty.gateway.checkout")


@dataclass
class Taken:
    """What an attempt took: each step's answer, and the steps whose outcome is unknown."""

    answers: dict[str, Message] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)


def fingerprint(member_id: str, request: pb.RedeemAtCheckoutRequest) -> str:
    """The request as the log keeps it (the member, never the identity used to find them)."""
    body = stored(request).SerializeToString(deterministic=True)
    return hashlib.sha256(member_id.encode() + b"\0" + body).hexdigest()


def stored(request: pb.RedeemAtCheckoutRequest) -> pb.RedeemAtCheckoutRequest:
    copy = pb.RedeemAtCheckoutRequest()
    copy.CopyFrom(request)
    copy.ClearField("identity")
    copy.ClearField("request_id")
    return copy


@dataclass(frozen=True)
class CheckoutSaga:
    METHOD = method("RedeemAtCheckout")

    services: Services
    uow: Callable[[], UnitOfWork]  # the gateway's database: the checkout log
    deadline: float  # seconds, for each step
    # The job gives back on behalf of the API client that checked out (its client id keeps
    # the services' idempotency records the same); the gateway signs for it.
    credentials: ServiceCredentials

    # -- the call ------------------------------------------------------------------------------

    async def __call__(
        self, request: pb.RedeemAtCheckoutRequest, md: Metadata
    ) -> pb.RedeemAtCheckoutResponse:
        check_checkout(request)
        unit = unit_of(request.unit)
        member = await self.services.resolve_member(self._call(md), request.identity)
        attempt, answered = await self.begin(request, unit, member_id_of(member, "member"))
        if answered is not None:
            return answered
        taken = Taken()
        try:
            response = await self.take(attempt, md, taken)
        except (grpc.aio.AioRpcError, DomainError):
            if not await self.give_back(attempt, md, taken):
                await self.set_state(attempt, "undoing")
                raise UndoPending(attempt.checkout_id) from None
            await self.set_state(attempt, "open")
            raise
        except asyncio.CancelledError:
            # The caller went away mid-way: the recovery job settles the attempt shortly.
            # (Broken mid-way otherwise, the row stays running until its lease runs out.)
            await asyncio.shield(self.set_state(attempt, "undoing"))
            raise
        if not await self.set_state(attempt, "completed", response):
            # Too slow: the recovery job took the attempt over. Give back what was taken (the
            # same request ids as the job's, so nothing twice) and let the caller retry.
            await self.give_back(attempt, md, taken)
            raise UndoPending(attempt.checkout_id)
        return response

    def _call(self, md: Metadata) -> Call:
        return Call.each(md, self.deadline)

    # -- the log -------------------------------------------------------------------------------

    async def begin(
        self, request: pb.RedeemAtCheckoutRequest, unit: str, member_id: str
    ) -> tuple[Attempt, pb.RedeemAtCheckoutResponse | None]:
        """The attempt of this request, now running; or the first answer."""
        client_id = current_caller().client_id
        scope = scope_of(self.METHOD)
        printed = fingerprint(member_id, request)
        order_id = request.order_id.strip()
        async with self.uow() as uow:
            checkouts = CheckoutLog(uow.session)
            started = await checkouts.start(
                scope,
                request.request_id,
                printed,
                client_id,
                unit,
                order_id,
                member_id,
                stored(request),
            )
            if started is None:
                existing = await checkouts.locked(scope, request.request_id)
                if existing.fingerprint != printed:
                    raise request_id_reused(request.request_id)
                if existing.state in ("completed", "refunded"):
                    first = (existing.checkout_id, existing.attempt)
                    return self._attempt(first, unit, member_id, request), existing.answer()
                if existing.state != "open":
                    # Running elsewhere, or being settled: the recovery job settles an attempt
                    # whose owner is gone within seconds of its lease running out.
                    raise InProgress(existing.checkout_id, existing.state)
                started = await checkouts.next_attempt(existing.checkout_id)
            await uow.commit()
        return self._attempt(started, unit, member_id, request), None

    @staticmethod
    def _attempt(
        started: tuple[str, int], unit: str, member_id: str, request: pb.RedeemAtCheckoutRequest
    ) -> Attempt:
        checkout_id, attempt = started
        return Attempt(
            checkout_id=checkout_id,
            client_id=current_caller().client_id,
            unit=unit,
            order_id=request.order_id.strip(),
            member_id=member_id,
            attempt=attempt,
            request=stored(request),
        )

    async def set_state(
        self, attempt: Attempt, state: str, response: pb.RedeemAtCheckoutResponse | None = None
    ) -> bool:
        """Move this attempt on; completing only while it still runs (False: the recovery
        job took it over, and gives it back)."""
        async with self.uow() as uow:
            moved = await CheckoutLog(uow.session).move(attempt, state, response)
            await uow.commit()
        return moved

    async def renew(self, attempt: Attempt) -> bool:
        """Renew this attempt's lease before a step; False if the recovery job took it over."""
        async with self.uow() as uow:
            renewed = await CheckoutLog(uow.session).renew(attempt)
            await uow.commit()
        return renewed

    # -- taking ----------------------------------------------------------------------------

    async def take(
        self, attempt: Attempt, md: Metadata, taken: Taken
    ) -> pb.RedeemAtCheckoutResponse:
        for index, part in enumerate(requested(attempt.request)):
            if index and not await self.renew(attempt):  # (begin has just set it for the first)
                raise UndoPending(attempt.checkout_id)
            try:
                taken.answers[part.name] = await self.step(attempt, part.name, md)
            except grpc.aio.AioRpcError as error:
                if not definite(error.code()):
                    taken.unknown.add(part.name)
                raise
        response = pb.RedeemAtCheckoutResponse(member=attempt.member)
        for part in requested(attempt.request):
            part.into(response, taken.answers[part.name])
        if POINTS.name not in taken.answers:
            with contextlib.suppress(grpc.aio.AioRpcError):  # a best-effort extra
                call = Call.each(md, BALANCE_SECONDS)
                balance = await self.services.get_balance(call, attempt.member)
                response.balance.CopyFrom(balance.balance)
        return response

    async def step(self, attempt: Attempt, step: str, md: Metadata) -> Message:
        """Take one part (or, asked again with the same request id, learn what was taken)."""
        return await BY_NAME[step].take(self.services, attempt, self._call(md))

    # -- giving back -----------------------------------------------------------------------

    async def give_back(self, attempt: Attempt, md: Metadata, taken: Taken) -> bool:
        """Give back every part taken (or perhaps taken); True when all are back."""
        whole = True
        for part in reversed(requested(attempt.request)):
            answer = taken.answers.get(part.name)
            try:
                if answer is None and part.name in taken.unknown:
                    # Never takes anything.
                    answer = await part.lookup(self.services, attempt, self._call(md))
                if answer is not None:
                    undo_id = attempt.step_id(part.name, undo=True)
                    await give_back(self.services, part, answer, attempt.member, undo_id, md)
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "checkout give-back failed",
                    checkout_id=attempt.checkout_id,
                    step=part.name,
                    code=error.code().name,
                )
                whole = False
        return whole

    async def recover(self, limit: int = RECOVERY_BATCH) -> int:
        """Settle attempts whose owner gave up (`undoing`) or is gone (`running`, its lease run
        out): each part is looked up and given back if taken. How many are now settled."""
        async with self.uow() as uow:
            claimed = await CheckoutLog(uow.session).claim_unsettled(
                SETTLE_AFTER_SECONDS, self.deadline + SETTLE_AFTER_SECONDS, limit
            )
            await uow.commit()
        settled = await asyncio.gather(*(self._settle(attempt) for attempt in claimed))
        return sum(settled)

    async def _settle(self, attempt: Attempt) -> bool:
        caller = Caller(
            unit=attempt.unit, client_id=attempt.client_id, scopes=frozenset({REDEEM_SCOPE})
        )
        taken = Taken(unknown={part.name for part in requested(attempt.request)})
        if not await self.give_back(attempt, self.credentials.metadata(caller), taken):
            return False  # still undoing: the next round tries again
        await self.set_state(attempt, "open")
        log.info("checkout settled", checkout_id=attempt.checkout_id)
        return True

    async def recover_forever(self, stopping: asyncio.Event, every: float = 2.0) -> None:
        while not stopping.is_set():
            try:
                await self.recover()
            except Exception as error:
                log_round_failed(log, "checkout recovery", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)
