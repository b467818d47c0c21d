"""Buying a reward with points (积分商城): reserve one unit of stock, debit the points service,
issue the reward as a coupon. A saga with compensation, its progress stored in
`reward_redemptions`:

- each step commits before the next begins, and no transaction stays open across the call to
  the points service;
- the debit's request_id is derived from the redemption, so any retry of the redemption (the
  client's, with the same request_id, or the recovery job's) reaches the points service as the
  same request: it debits once;
- a definite refusal by the points service (not enough points) gives the stock back and ends
  the redemption as failed; a failure after the debit cancels the debit (CancelRedemption,
  again with a derived request_id) and gives the stock back: no lost points, no phantom stock;
- when the points service does not answer, nobody knows whether it debited: the redemption
  stays pending (UNAVAILABLE, REDEMPTION_PENDING) and a retry or the recovery job finishes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from google.protobuf.message import Message
from loyalty_kit.errors import DomainError
from loyalty_kit.idempotency import fingerprint, request_id_reused, validate_request_id
from loyalty_kit.jobs import log_round_failed
from loyalty_kit.logs import get_logger

from loyalty_benefits.domain import events
from loyalty_benefits.domain.catalogue import Reward
from loyalty_benefits.domain.coupons import Coupon, issuable_window
from loyalty_benefits.domain.errors import (
    CouponNotFound,
    CouponTemplateNotFound,
    OutOfStock,
    PointsRefused,
    PointsUnreachable,
    RedemptionFailed,
    RedemptionPending,
    RewardNotFound,
)
from loyalty_benefits.domain.rewards import Redemption, RedemptionState
from loyalty_benefits.service_layer import handlers
from loyalty_benefits.service_layer.uow import BenefitsUnitOfWork

log = get_logger("loyalty.benefits.rewards")


class PointsBank(Protocol):
    """The points service as the saga needs it (adapters/points.py over gRPC)."""

    async def redeem(
        self, member_id: str, unit: str, points: int, request_id: str, order_id: str
    ) -> str:
        """Debit; the posting id. PointsRefused or PointsUnreachable."""

    async def cancel(
        self, member_id: str, unit: str, posting_id: str, request_id: str, reason: str
    ) -> None:
        """Undo a debit made for `unit`. PointsRefused or PointsUnreachable."""


@dataclass
class Outcome:
    redemption: Redemption
    coupon: Coupon
    reward: Reward | None  # as the catalogue in force describes it (None: since removed)
    available: int = 0  # the reward's stock left now, as ListRewards shows it


class RewardRedemptions:
    def __init__(
        self,
        uow_factory: Callable[..., BenefitsUnitOfWork],
        bank: PointsBank,
        clock: Callable[[], datetime],
    ) -> None:
        self.uow = uow_factory
        self.bank = bank
        self.clock = clock

    async def redeem(
        self, scope: str, request: Message, request_id: str, member_id: str, reward_code: str
    ) -> Outcome:
        validate_request_id(request_id)
        redemption = await self._reserve(scope, request, request_id, member_id, reward_code)
        return await self.advance(redemption)

    async def _reserve(
        self, scope: str, request: Message, request_id: str, member_id: str, reward_code: str
    ) -> Redemption:
        """The redemption of this request_id: the earlier attempt's, or a new one holding one
        unit of stock (a member who is not active gets none: MemberNotActive; an earlier
        attempt carries on, the points service refusing such a member's debit)."""
        print_ = fingerprint(request)
        for _ in range(2):
            async with self.uow() as uow:
                earlier = await uow.rewards.redemption_for(scope, request_id)
                if earlier is not None:
                    if earlier.fingerprint != print_:
                        raise request_id_reused(request_id)
                    return earlier
                await handlers.active_member(uow, member_id)  # before any stock or points move
                rules = await handlers.catalogue(uow)
                reward = rules.reward(reward_code)
                if reward is None:
                    raise RewardNotFound(reward_code)
                now = self.clock()
                template = rules.template(reward.coupon_template)
                if template is None:
                    raise CouponTemplateNotFound(reward.coupon_template)
                issuable_window(template, now)  # fail before any points move
                if not await uow.rewards.take_one(reward.code):
                    raise OutOfStock(reward.code)
                redemption = Redemption(
                    redemption_id=str(uuid.uuid4()),
                    scope=scope,
                    request_id=request_id,
                    fingerprint=print_,
                    member_id=member_id,
                    reward_code=reward.code,
                    unit=reward.unit,
                    points=reward.points,
                    state=RedemptionState.RESERVED,
                    created_at=now,
                )
                if await uow.rewards.add_redemption(redemption):
                    await uow.commit()
                    return redemption
                # A concurrent attempt with the same request_id won: rolled back (the stock
                # too), read its redemption.
        raise AssertionError("a redemption for this request_id must exist by now")

    async def advance(self, redemption: Redemption) -> Outcome:
        """Carry a redemption on from where it stands to completed (or failed and undone)."""
        if redemption.state is RedemptionState.RESERVED:
            redemption = await self._charge(redemption)
        if redemption.state is RedemptionState.CHARGED:
            redemption = await self._deliver(redemption)
        if redemption.state is RedemptionState.FAILED:
            raise RedemptionFailed(
                redemption.redemption_id, redemption.failure_reason, redemption.failure_message
            )
        async with self.uow(read_only=True) as uow:
            coupon = await uow.coupons.get(redemption.member_id, redemption.coupon_code)
            rules = await uow.catalogue.latest()
            stock = await uow.rewards.stock([redemption.reward_code])
        if coupon is None:
            raise CouponNotFound(redemption.coupon_code)
        reward = rules.reward(redemption.reward_code) if rules else None
        return Outcome(redemption, coupon, reward, stock.get(redemption.reward_code, 0))

    async def _charge(self, redemption: Redemption) -> Redemption:
        """Debit the points (step 2); the redemption as it stands after."""
        try:
            posting_id = await self.bank.redeem(
                redemption.member_id,
                redemption.unit,
                redemption.points,
                redemption.points_request_id,
                redemption.order_id,
            )
        except PointsRefused as refused:
            undone = await self._undo(redemption, refused.reason, refused.message)
            if undone.state is RedemptionState.FAILED:
                raise
            return undone  # a concurrent attempt debited meanwhile: carry on from there
        except PointsUnreachable:
            raise RedemptionPending(redemption.redemption_id) from None
        async with self.uow() as uow:
            current = await self._locked(uow, redemption)
            if current.state is RedemptionState.RESERVED:
                current.state = RedemptionState.CHARGED
                current.posting_id = posting_id
                await uow.rewards.save_redemption(current, self.clock())
                await uow.commit()
        if current.state is RedemptionState.FAILED and current.posting_id != posting_id:
            # A concurrent attempt was refused and undid the redemption while this debit went
            # through: give the points back.
            await self._cancel(current, posting_id)
        return current

    async def _deliver(self, redemption: Redemption) -> Redemption:
        """Issue the reward's coupon (step 3); if that fails, undo the debit and the stock."""
        try:
            async with self.uow() as uow:
                current = await self._locked(uow, redemption)
                if current.state is RedemptionState.CHARGED:
                    await self._issue(uow, current)
                    await uow.commit()
            return current
        except Exception as error:
            log.warning(
                "reward could not be issued; undoing the redemption",
                redemption_id=redemption.redemption_id,
                error=type(error).__name__,
            )
            reason = error.reason if isinstance(error, DomainError) else "REWARD_NOT_ISSUED"
            await self._undo(redemption, reason, str(error))
            raise

    async def _issue(self, uow: BenefitsUnitOfWork, redemption: Redemption) -> None:
        now = self.clock()
        rules = await handlers.catalogue(uow)
        reward = rules.reward(redemption.reward_code)
        if reward is None:
            raise RewardNotFound(redemption.reward_code)
        coupon = await handlers.grant_coupon(
            uow, rules, reward.coupon_template, redemption.member_id, redemption.order_id, now
        )
        redemption.state = RedemptionState.COMPLETED
        redemption.coupon_code = coupon.code
        await uow.rewards.save_redemption(redemption, now)
        uow.record(
            events.RewardRedeemed(
                member_id=redemption.member_id,
                redemption_id=redemption.redemption_id,
                reward_code=redemption.reward_code,
                unit=redemption.unit,
                points=redemption.points,
                points_posting_id=redemption.posting_id,
                coupon_code=coupon.code,
                occurred_at=now,
            )
        )

    async def _undo(self, redemption: Redemption, reason: str, message: str) -> Redemption:
        """Give back what the redemption holds (the debit, then the stock) and end it failed;
        the redemption as it stands after. Decided on the stored state, not the caller's copy:
        a concurrent attempt may have debited meanwhile, and a debit this attempt did not
        cancel is never left behind (the redemption then carries on instead)."""
        async with self.uow(read_only=True) as uow:
            stored = await uow.rewards.redemption(redemption.redemption_id)
        assert stored is not None
        cancelled = stored.posting_id
        if cancelled:
            await self._cancel(stored, cancelled)
        async with self.uow() as uow:
            current = await self._locked(uow, redemption)
            undoable = current.state is RedemptionState.RESERVED or (
                current.state is RedemptionState.CHARGED and current.posting_id == cancelled
            )
            if undoable:
                await uow.rewards.give_back_one(current.reward_code)
                current.state = RedemptionState.FAILED
                current.failure_reason = reason
                current.failure_message = message
                await uow.rewards.save_redemption(current, self.clock())
                await uow.commit()
        return current

    async def _cancel(self, redemption: Redemption, posting_id: str) -> None:
        try:
            await self.bank.cancel(
                redemption.member_id,
                redemption.unit,
                posting_id,
                redemption.cancel_request_id,
                f"reward {redemption.reward_code} not issued",
            )
        except PointsUnreachable:
            raise RedemptionPending(redemption.redemption_id) from None

    @staticmethod
    async def _locked(uow: BenefitsUnitOfWork, redemption: Redemption) -> Redemption:
        current = await uow.rewards.redemption(redemption.redemption_id, lock=True)
        assert current is not None  # redemptions are never deleted
        return current

    async def recover(self, older_than: timedelta, limit: int = 100) -> int:
        """Finish redemptions left half-way (a crash, an unanswered debit): each is carried on
        as a retry would. Returns how many were looked at."""
        async with self.uow() as uow:
            stale = await uow.rewards.stale(self.clock() - older_than, limit)
        for redemption_id in stale:
            async with self.uow() as uow:
                redemption = await uow.rewards.redemption(redemption_id)
            if redemption is None:
                continue
            try:
                await self.advance(redemption)
            except (PointsRefused, RedemptionFailed, RedemptionPending):
                pass  # ended failed and undone, or still unreachable: the next round retries
            except Exception as error:
                log_round_failed(
                    log, "recovering a reward redemption", error, redemption_id=redemption_id
                )
        return len(stale)
