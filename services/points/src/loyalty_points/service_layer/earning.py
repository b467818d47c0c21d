"""Earning: points for a purchase (and its preview), the refund that takes them back, the
confirmation that makes pending points available, and referrals (paid with the referred
member's first earn)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from loyalty_kit.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument

from loyalty_points.domain import moves
from loyalty_points.domain.account import Account
from loyalty_points.domain.errors import OrderAlreadyEarned, OrderNotFound
from loyalty_points.domain.ledger import LotStatus, Posting, PostingKind
from loyalty_points.domain.programme import Earned, Line, Programme, compute_earn
from loyalty_points.service_layer.accounts import (
    check_order_id,
    open_account,
    open_accounts,
    programme_at,
    readable_account,
    surviving_account,
    tier_at,
)
from loyalty_points.service_layer.ports import MemberDirectory, PointsWork


@dataclass(frozen=True)
class Earn:
    member_id: str
    unit: str
    channel: str
    order_id: str
    lines: list[Line]
    occurred_at: datetime


async def preview(
    uow: PointsWork, command: Earn, directory: MemberDirectory, now: datetime
) -> tuple[Earned, datetime | None]:
    programme = await programme_at(uow.ledger, command.occurred_at)
    account = await readable_account(uow.ledger, command.member_id, directory)
    tier = await tier_at(uow.ledger, account, command.occurred_at) if account else ""
    # Badges are kept for members points has no account for yet too.
    badges = await uow.ledger.badges_at(command.member_id, command.occurred_at)
    earned = compute_earn(programme, command.unit, tier, command.lines, command.occurred_at, badges)
    available_at = programme.available_at(command.unit, command.occurred_at)
    return earned, available_at if available_at and available_at > now else None


async def earn(
    uow: PointsWork, command: Earn, directory: MemberDirectory, now: datetime
) -> tuple[Posting, Account]:
    check_order_id(command.order_id)
    if command.occurred_at > now + timedelta(minutes=5):
        raise InvalidArgument.of([FieldViolation("occur_time", "must not be in the future")])
    # The rules in force when the purchase happened apply (an offline POS replaying later).
    programme = await programme_at(uow.ledger, command.occurred_at)
    account = await open_account(uow.ledger, command.member_id, directory, now)
    account.ensure_active()
    tier = await tier_at(uow.ledger, account, command.occurred_at)
    badges = await uow.ledger.badges_at(account.member_id, command.occurred_at)
    earned = compute_earn(programme, command.unit, tier, command.lines, command.occurred_at, badges)
    posting, order = account.earn(
        earned,
        unit=command.unit,
        channel=command.channel,
        order_id=command.order_id,
        lines=command.lines,
        occurred_at=command.occurred_at,
        programme=programme,
        now=now,
    )
    if not await uow.ledger.claim_order(order):
        raise OrderAlreadyEarned(command.unit, command.order_id)
    referrer = await _reward_referral(uow, account, programme, now)
    await uow.ledger.save(account, now)
    if referrer is not None:
        await uow.ledger.save(referrer, now)
    return posting, account


async def _reward_referral(
    uow: PointsWork, referee: Account, programme: Programme, now: datetime
) -> Account | None:
    """On the referred member's first qualifying purchase: both bonuses, exactly once (the
    referral is marked rewarded in the same transaction as the earn). Answers the referrer's
    account when it was paid (to be saved)."""
    if not referee.referral_pending:
        return None
    referral = await uow.ledger.referral(referee.member_id)
    if referral is None or referral[1] is not None:
        referee.referral_pending = False
        return None
    # The referee's account is locked already; a deadlock with a transaction locking the two
    # the other way round aborts one of them, and run_idempotent runs it again. A referrer
    # merged since is paid as the survivor; one merged into the referee is the referee.
    referrer = await surviving_account(uow.ledger, referral[0])
    if referrer is not None and referrer.member_id == referee.member_id:
        referrer = None
    paid_as = referrer.member_id if referrer else referral[0]
    await uow.ledger.mark_referral_rewarded(referee.member_id, now)
    moves.reward_referral(referee, referrer, paid_as, programme, now)
    return referrer


async def reverse(
    uow: PointsWork,
    member_id: str,
    unit: str,
    order_id: str,
    line_ids: list[str],
    reason: str,
    now: datetime,
) -> tuple[Posting, Account]:
    """A refund, whole or by line."""
    check_order_id(order_id)
    account = await uow.ledger.account(member_id, lock=True)
    order = await uow.ledger.order(unit, order_id)
    if account is None or order is None or order.member_id != member_id:
        raise OrderNotFound(unit, order_id)
    refund = order.refund(line_ids)
    posting = account.reverse(
        order,
        refund,
        earn_lot=await uow.ledger.lot(member_id, order.lot_id),
        lots=await uow.ledger.lots(member_id, [LotStatus.OPEN]),
        reason=reason,
        programme=await programme_at(uow.ledger, now),
        now=now,
    )
    await uow.ledger.save_order(order)
    await uow.ledger.save(account, now)
    return posting, account


async def confirm_order(
    uow: PointsWork, member_id: str, unit: str, order_id: str, now: datetime
) -> tuple[int, Account]:
    """The pending points of an order available now (the stay is over)."""
    account = await uow.ledger.account(member_id, lock=True)
    order = await uow.ledger.order(unit, order_id)
    if account is None or order is None or order.member_id != member_id:
        raise OrderNotFound(unit, order_id)
    lot = await uow.ledger.lot(member_id, order.lot_id)
    if lot is None or lot.status is not LotStatus.PENDING:
        return 0, account
    activated = account.activate(lot, now)
    await uow.ledger.save(account, now)
    return activated, account


async def record_referral(
    uow: PointsWork,
    member_id: str,
    referrer_id: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[str, bool]:
    """Answers the referrer and whether the bonuses were paid already (a repeat)."""
    if member_id == referrer_id:
        raise InvalidArgument.of([FieldViolation("referrer", "a member cannot refer themselves")])
    referee, referrer = await open_accounts(uow.ledger, (member_id, referrer_id), directory, now)
    referrer.ensure_active()
    existing = await uow.ledger.referral(member_id)
    if existing is not None:
        if existing[0] == referrer_id:
            return referrer_id, existing[1] is not None
        raise AlreadyExists(
            "this member was already referred by someone else",
            reason="ALREADY_REFERRED",
            metadata={"member_id": member_id},
        )
    if await uow.ledger.has_postings(member_id, PostingKind.EARN):
        raise FailedPrecondition(
            "the member has already made a qualifying purchase: too late to record a referral",
            reason="REFEREE_ALREADY_ACTIVE",
            metadata={"member_id": member_id},
        )
    await uow.ledger.add_referral(member_id, referrer_id, now)
    referee.expect_referral()
    await uow.ledger.save(referee, now)
    return referrer_id, False
