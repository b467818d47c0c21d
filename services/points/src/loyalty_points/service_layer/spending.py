"""Spending: redemptions and their cancellation, and manual adjustments either way."""

from __future__ import annotations

from datetime import datetime

from loyalty_kit import audit
from loyalty_kit.caller import check_unit
from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations

from loyalty_points.domain.account import Account
from loyalty_points.domain.errors import PostingNotFound
from loyalty_points.domain.ledger import GROUP, LotStatus, Posting, PostingKind
from loyalty_points.domain.programme import Programme
from loyalty_points.service_layer.accounts import (
    MAX_POINTS,
    check_points,
    open_account,
    programme_at,
)
from loyalty_points.service_layer.ports import MemberDirectory, PointsWork


async def redeem(
    uow: PointsWork,
    member_id: str,
    unit: str,
    channel: str,
    points: int,
    order_id: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[Posting, Account, Programme]:
    check_points(points)
    programme = await programme_at(uow.ledger, now)
    if unit not in programme.units:
        raise InvalidArgument.of([FieldViolation("unit", f"unknown unit {unit!r}")])
    account = await open_account(uow.ledger, member_id, directory, now)
    account.ensure_active()
    posting = account.redeem(
        points,
        unit=unit,
        channel=channel,
        order_id=order_id,
        lots=await uow.ledger.lots(member_id, [LotStatus.OPEN]),
        programme=programme,
        now=now,
    )
    await uow.ledger.save(account, now)
    return posting, account, programme


async def cancel_redemption(
    uow: PointsWork,
    member_id: str,
    posting_id: str,
    reason: str,
    now: datetime,
    confined_to: str | None = None,
) -> tuple[Posting, int, Account]:
    """Give a redemption's points back; `confined_to`: the unit asking (None: an admin), which
    may cancel only its own redemptions."""
    account = await uow.ledger.account(member_id, lock=True)
    redemption = await uow.ledger.posting(member_id, posting_id) if account else None
    if account is None or redemption is None or redemption.kind is not PostingKind.REDEEM:
        raise PostingNotFound(posting_id)
    check_unit(redemption.unit, confined_to)
    account.ensure_active()
    posting, expired = account.cancel_redemption(
        redemption,
        cancelled_by=await uow.ledger.undoing(member_id, posting_id, PostingKind.REDEMPTION_CANCEL),
        returning=await uow.ledger.moved_lots(member_id, posting_id),
        reason=reason,
        now=now,
    )
    await uow.ledger.save(account, now)
    return posting, expired, account


async def adjust(
    uow: PointsWork,
    member_id: str,
    unit: str,
    points: int,
    reason: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[Posting, Account]:
    problems = Violations()
    if points == 0 or abs(points) > MAX_POINTS:
        problems.add("points", f"non-zero, at most {MAX_POINTS} either way")
    if not reason.strip() or len(reason) > 512:
        problems.add("reason", "required, at most 512 characters")
    problems.raise_if_any()
    programme = await programme_at(uow.ledger, now)
    if unit not in programme.units and unit != GROUP:
        raise InvalidArgument.of([FieldViolation("unit", f"unknown unit {unit!r}")])
    account = await open_account(uow.ledger, member_id, directory, now)
    before = {"available": account.available, "pending": account.pending}
    posting = account.adjust(
        points,
        unit=unit,
        reason=reason.strip(),
        lots=await uow.ledger.lots(member_id, [LotStatus.OPEN]) if points < 0 else [],
        programme=programme,
        now=now,
    )
    await uow.ledger.save(account, now)
    audit.note(
        before=before,
        after={"available": account.available, "pending": account.pending, "points": points},
    )
    return posting, account
