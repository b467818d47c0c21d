"""Use cases of the points service, each inside one unit of work (one transaction).

Every change locks the member's account row first, then writes one posting, moves lots, updates
the account's derived balances, and adds its event to the outbox: all or nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from loyalty.points.v1 import events_pb2
from loyalty_kit.caller import check_unit
from loyalty_kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Violations,
)
from loyalty_kit.money import Amount, money
from loyalty_kit.timestamps import timestamp as _ts
from loyalty_kit.validation import bounded

from loyalty_points.adapters.repository import Account, OrderRecord, Posting, new_id
from loyalty_points.domain.errors import (
    MemberNotActive,
    MemberNotFound,
    NoProgramme,
    NothingToReverse,
    OrderAlreadyEarned,
    OrderNotFound,
    PartnerReferenceUsed,
    PostingNotFound,
    RedemptionAlreadyCancelled,
)
from loyalty_points.domain.ledger import (
    ISSUING,
    REDEEMING,
    Lot,
    LotStatus,
    PostingKind,
    forfeit_all,
    take_oldest_first,
)
from loyalty_points.domain.programme import Earned, Line, Programme, compute_earn
from loyalty_points.service_layer.uow import PointsUnitOfWork

GROUP = "group"  # the unit of postings that belong to no unit (expiry, merges, erasure)
MAX_POINTS = 10**12


def utc_now() -> datetime:
    return datetime.now(UTC)


class MemberDirectory(Protocol):
    """Where the points service learns whether a member exists (the identity service)."""

    async def state_of(self, member_id: str) -> tuple[str, str] | None:
        """(state, merged_into) of the member, or None if there is no such member."""


# --- accounts -----------------------------------------------------------------------------------
async def open_account(
    uow: PointsUnitOfWork, member_id: str, directory: MemberDirectory, now: datetime
) -> Account:
    """The member's account, locked; created on first touch after asking identity."""
    account = await uow.ledger.account(member_id, lock=True)
    if account is None:
        known = await directory.state_of(member_id)
        if known is None:
            raise MemberNotFound(member_id)
        state, merged_into = known
        await uow.ledger.create_account(Account(member_id, state, merged_into), now)
        account = await uow.ledger.account(member_id, lock=True)
        assert account is not None
    return account


async def tier_at(uow: PointsUnitOfWork, account: Account, at: datetime) -> str:
    """The tier whose multiplier a purchase made at `at` earns at: the one the member held then,
    as the programme's rules are the ones in force then (a receipt recorded late, an offline
    till replaying). The current tier, without a look-up, for anything since its change."""
    if account.tier_effective_at is None or at >= account.tier_effective_at:
        return account.tier
    return await uow.ledger.tier_at(account.member_id, at)


async def readable_account(
    uow: PointsUnitOfWork, member_id: str, directory: MemberDirectory
) -> Account | None:
    """The member's account for a read (None: never touched here, but identity knows the
    member). An absorbed member is refused on reads as on writes (MEMBER_MERGED naming the
    survivor): a stale id never reads as an empty account."""
    account = await uow.ledger.account(member_id)
    if account is None:
        known = await directory.state_of(member_id)
        if known is None:
            raise MemberNotFound(member_id)
        account = Account(member_id, *known)
        return None if account.state != "merged" else _refuse_merged(account)
    return account if account.state != "merged" else _refuse_merged(account)


def _refuse_merged(account: Account) -> Account:
    raise MemberNotActive(account.member_id, account.state, account.merged_into)


def ensure_active(account: Account) -> None:
    if account.state != "active":
        raise MemberNotActive(account.member_id, account.state, account.merged_into)


async def programme_at(uow: PointsUnitOfWork, at: datetime) -> Programme:
    programme = await uow.ledger.programme_at(at)
    if programme is None:
        raise NoProgramme()
    return programme


# --- programme ----------------------------------------------------------------------------------
async def publish_programme(
    uow: PointsUnitOfWork, programme: Programme, reason: str, now: datetime
) -> Programme:
    first = await uow.ledger.programme_version(1) is None
    # The first version may start in the past (a programme migrated from legacy systems, whose
    # offline receipts replay under it); later ones never do.
    if not first and programme.effective_from < now - timedelta(minutes=1):
        raise InvalidArgument.of(
            [
                FieldViolation(
                    "programme.effective_from",
                    "must not be in the past: rule changes never rewrite history",
                )
            ]
        )
    programme.validate()
    programme.version = await uow.ledger.add_programme(programme, reason)
    # Identity learns from it which units members may be registered at.
    await uow.outbox.add(
        events_pb2.ProgrammePublished(
            version=programme.version,
            units=sorted(programme.units),
            effective_from=_ts(programme.effective_from),
        )
    )
    return programme


# --- earning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Earn:
    member_id: str
    unit: str
    channel: str
    order_id: str
    lines: list[Line]
    occurred_at: datetime


def _check_order_id(order_id: str) -> None:
    bounded(order_id, "order_id")


def breakdown_json(earned: Earned) -> dict[str, Any]:
    base = earned.base_spend or earned.spend
    return {
        "spend": {"currency": earned.spend.currency, "amount": str(earned.spend.value)},
        "base_spend": {"currency": base.currency, "amount": str(base.value)},
        "base_rate": str(earned.base_rate),
        "factors": [{"source": f.source, "multiplier": str(f.multiplier)} for f in earned.factors],
        "bonuses": [{"source": s, "points": p} for s, p in earned.bonuses],
        "exact": str(earned.exact),
        "points": earned.points,
        "lines": earned.line_points,
    }


async def preview(
    uow: PointsUnitOfWork, command: Earn, directory: MemberDirectory, now: datetime
) -> tuple[Earned, datetime | None]:
    programme = await programme_at(uow, command.occurred_at)
    account = await readable_account(uow, command.member_id, directory)
    tier = await tier_at(uow, account, command.occurred_at) if account else ""
    earned = compute_earn(programme, command.unit, tier, command.lines, command.occurred_at)
    available_at = programme.available_at(command.unit, command.occurred_at)
    return earned, available_at if available_at and available_at > now else None


async def earn(
    uow: PointsUnitOfWork, command: Earn, directory: MemberDirectory, now: datetime
) -> tuple[Posting, Account]:
    _check_order_id(command.order_id)
    if command.occurred_at > now + timedelta(minutes=5):
        raise InvalidArgument.of([FieldViolation("occur_time", "must not be in the future")])
    # The rules in force when the purchase happened apply (an offline POS replaying later).
    programme = await programme_at(uow, command.occurred_at)
    account = await open_account(uow, command.member_id, directory, now)
    ensure_active(account)
    tier = await tier_at(uow, account, command.occurred_at)
    earned = compute_earn(programme, command.unit, tier, command.lines, command.occurred_at)
    available_at = programme.available_at(command.unit, command.occurred_at)
    pending = available_at is not None and available_at > now
    posting = Posting(
        posting_id=new_id(),
        member_id=account.member_id,
        kind=PostingKind.EARN,
        points=earned.points,
        unit=command.unit,
        channel=command.channel,
        order_id=command.order_id,
        occurred_at=command.occurred_at,
        posted_at=now,
        pending=pending,
        available_at=available_at if pending else None,
        programme_version=programme.version,
        breakdown=breakdown_json(earned),
    )
    lot = Lot(
        lot_id=new_id(),
        earned_unit=command.unit,
        remaining=earned.points,
        earned_at=command.occurred_at,
        expires_at=programme.expiry_of(command.occurred_at),
        status=LotStatus.PENDING if pending else LotStatus.OPEN,
    )
    order = OrderRecord(
        unit=command.unit,
        order_id=command.order_id,
        member_id=account.member_id,
        posting_id=posting.posting_id,
        lot_id=lot.lot_id,
        currency=earned.spend.currency,
        lines={
            line.line_id: {
                "points": earned.line_points[line.line_id],
                "reversed": 0,
                "amount": str(line.amount.value),
                "refunded": False,
            }
            for line in command.lines
        },
        bonus_points=sum(p for _, p in earned.bonuses),
    )
    if not await uow.ledger.claim_order(order):
        raise OrderAlreadyEarned(command.unit, command.order_id)
    await uow.ledger.add_earn(posting, lot, available_at)
    if pending:
        account.pending += earned.points
    else:
        account.available += earned.points
    account.lifetime_earned += earned.points
    if account.referral_pending:
        await reward_referral(uow, account, programme, now)
    await uow.ledger.save_account(account, now)
    base = earned.base_spend or Amount(programme.base_currency, programme.to_base(earned.spend))
    await uow.outbox.add(
        events_pb2.PointsEarned(
            member_id=account.member_id,
            posting_id=posting.posting_id,
            unit=command.unit,
            order_id=command.order_id,
            qualifying_spend=money(earned.spend.value, earned.spend.currency),
            qualifying_spend_base=money(base.value, base.currency),
            points=earned.points,
            pending=pending,
            occurred_at=_ts(command.occurred_at),
        )
    )
    return posting, account


# --- spending -----------------------------------------------------------------------------------
def _positive_points(points: int, field: str = "points") -> None:
    if points <= 0 or points > MAX_POINTS:
        raise InvalidArgument.of([FieldViolation(field, f"a whole number from 1 to {MAX_POINTS}")])


async def _credit(
    uow: PointsUnitOfWork, account: Account, posting: Posting, expires_at: datetime | None
) -> None:
    """Points a posting adds to the member: a new open lot at the posting's unit."""
    lot = Lot(new_id(), posting.unit, posting.points, posting.posted_at, expires_at)
    await uow.ledger.add_lot(account.member_id, lot, posting.posting_id, posting.points, None)
    await uow.ledger.move(
        account.member_id,
        posting.posting_id,
        [(lot, posting.points)],
        posting.unit,
        posting.posted_at,
    )
    account.available += posting.points


async def _take(
    uow: PointsUnitOfWork,
    account: Account,
    points: int,
    posting: Posting,
    *,
    first_lot: str | None = None,
) -> None:
    lots = await uow.ledger.lots(account.member_id, [LotStatus.OPEN])
    taken = take_oldest_first(lots, points, account.member_id, first=first_lot)
    for lot, amount in taken:
        lot.remaining -= amount
        await uow.ledger.save_lot(account.member_id, lot)
    await uow.ledger.move(
        account.member_id,
        posting.posting_id,
        [(lot, -n) for lot, n in taken],
        posting.unit,
        posting.posted_at,
    )
    account.available -= points


async def redeem(
    uow: PointsUnitOfWork,
    member_id: str,
    unit: str,
    channel: str,
    points: int,
    order_id: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[Posting, Account, Programme]:
    _positive_points(points)
    programme = await programme_at(uow, now)
    if unit not in programme.units:
        raise InvalidArgument.of([FieldViolation("unit", f"unknown unit {unit!r}")])
    account = await open_account(uow, member_id, directory, now)
    ensure_active(account)
    posting = Posting(
        posting_id=new_id(),
        member_id=member_id,
        kind=PostingKind.REDEEM,
        points=-points,
        unit=unit,
        channel=channel,
        order_id=order_id,
        occurred_at=now,
        posted_at=now,
        programme_version=programme.version,
    )
    await uow.ledger.add_posting(posting)
    await _take(uow, account, points, posting)
    await uow.ledger.save_account(account, now)
    await uow.outbox.add(
        events_pb2.PointsRedeemed(
            member_id=member_id,
            posting_id=posting.posting_id,
            unit=unit,
            points=points,
            occurred_at=_ts(now),
        )
    )
    return posting, account, programme


async def give_back(
    uow: PointsUnitOfWork, account: Account, consumed: Posting, posting: Posting, now: datetime
) -> int:
    """Undo a consuming posting (a redemption, an exchange out): every point goes back to the lot
    it came from, so the books read as if it never happened (the unit that redeemed them
    redeemed nothing, no flow between units). Points whose lot has expired since would have
    expired with it: they expire again at once, with an expiry posting of their own that the
    settlement attributes to the unit that issued them. Writes `posting`; answers the number of
    points that expired."""
    returned: list[tuple[Lot, int]] = []
    lapsed: list[tuple[Lot, int]] = []
    for lot_id, moved in await uow.ledger.movements(account.member_id, consumed.posting_id):
        lot = await uow.ledger.lot(account.member_id, lot_id)
        if lot is None:
            continue
        returned.append((lot, -moved))
        if lot.status is LotStatus.EXPIRED or (
            lot.expires_at is not None and lot.expires_at <= now
        ):
            lapsed.append((lot, -moved))
        else:
            lot.remaining += -moved
            await uow.ledger.save_lot(account.member_id, lot)
    posting.points = sum(n for _, n in returned)
    await uow.ledger.add_posting(posting)
    await uow.ledger.move(account.member_id, posting.posting_id, returned, posting.unit, now)
    account.available += posting.points
    expired = sum(n for _, n in lapsed)
    if expired:
        expiry = Posting(
            posting_id=new_id(),
            member_id=account.member_id,
            kind=PostingKind.EXPIRE,
            points=-expired,
            unit=GROUP,
            occurred_at=now,
            posted_at=now,
            related_posting_id=posting.posting_id,
            reason="expired before the points were given back",
        )
        await uow.ledger.add_posting(expiry)
        await uow.ledger.move(
            account.member_id, expiry.posting_id, [(lot, -n) for lot, n in lapsed], GROUP, now
        )
        for lot, _ in lapsed:
            lot.status = LotStatus.EXPIRED if lot.remaining == 0 else lot.status
            await uow.ledger.save_lot(account.member_id, lot)
        account.available -= expired
        await uow.outbox.add(
            events_pb2.PointsExpired(
                member_id=account.member_id,
                posting_id=expiry.posting_id,
                points=expired,
                occurred_at=_ts(now),
            )
        )
    return expired


async def cancel_redemption(
    uow: PointsUnitOfWork,
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
    ensure_active(account)
    if await uow.ledger.undoing(member_id, posting_id, PostingKind.REDEMPTION_CANCEL):
        raise RedemptionAlreadyCancelled(posting_id)
    posting = Posting(
        posting_id=new_id(),
        member_id=member_id,
        kind=PostingKind.REDEMPTION_CANCEL,
        points=0,
        unit=redemption.unit,
        channel=redemption.channel,
        order_id=redemption.order_id,
        occurred_at=now,
        posted_at=now,
        related_posting_id=posting_id,
        reason=reason,
    )
    expired = await give_back(uow, account, redemption, posting, now)
    await uow.ledger.save_account(account, now)
    await uow.outbox.add(
        events_pb2.RedemptionCancelled(
            member_id=member_id,
            posting_id=posting.posting_id,
            redemption_posting_id=posting_id,
            points=posting.points,
            occurred_at=_ts(now),
        )
    )
    return posting, expired, account


# --- refunds ------------------------------------------------------------------------------------
async def reverse(
    uow: PointsUnitOfWork,
    member_id: str,
    unit: str,
    order_id: str,
    line_ids: list[str],
    reason: str,
    now: datetime,
) -> tuple[Posting, Account]:
    _check_order_id(order_id)
    account = await uow.ledger.account(member_id, lock=True)
    order = await uow.ledger.order(unit, order_id)
    if account is None or order is None or order.member_id != member_id:
        raise OrderNotFound(unit, order_id)
    unknown = [i for i, line_id in enumerate(line_ids) if line_id not in order.lines]
    if unknown:
        raise InvalidArgument.of(
            [FieldViolation(f"line_ids[{i}]", "not a line of the order") for i in unknown]
        )
    chosen = line_ids or list(order.lines)
    refunding = [line_id for line_id in chosen if not order.lines[line_id]["refunded"]]
    if not refunding:
        raise NothingToReverse(order_id)
    points = sum(int(order.lines[line_id]["points"]) for line_id in refunding)
    spend = sum((Decimal(order.lines[line_id]["amount"]) for line_id in refunding), Decimal(0))
    for line_id in refunding:
        order.lines[line_id]["refunded"] = True
    if all(line["refunded"] for line in order.lines.values()) and not order.bonus_reversed:
        points += order.bonus_points  # the order's bonus goes with its last line
        order.bonus_reversed = True

    posting = Posting(
        posting_id=new_id(),
        member_id=member_id,
        kind=PostingKind.REVERSE,
        points=0,
        unit=unit,
        order_id=order_id,
        occurred_at=now,
        posted_at=now,
        related_posting_id=order.posting_id,
        reason=reason,
    )
    lot = await uow.ledger.lot(member_id, order.lot_id)
    taken_pending = 0
    if lot is not None and lot.status is LotStatus.PENDING:
        # A refund inside the pending window cancels the pending points.
        taken_pending = min(points, lot.remaining)
        lot.remaining -= taken_pending
        if lot.remaining == 0:
            lot.status = LotStatus.CANCELLED
        await uow.ledger.save_lot(member_id, lot)
        await uow.ledger.move(member_id, posting.posting_id, [(lot, -taken_pending)], unit, now)
        account.pending -= taken_pending
    rest = points - taken_pending
    recoverable = min(rest, account.available)
    posting.points = -(taken_pending + recoverable)
    posting.unrecovered_points = rest - recoverable
    await uow.ledger.add_posting(posting)
    if recoverable:
        await _take(uow, account, recoverable, posting, first_lot=order.lot_id)
    for line_id in refunding:
        order.lines[line_id]["reversed"] = order.lines[line_id]["points"]
    await uow.ledger.save_order(order)
    account.lifetime_earned -= points
    await uow.ledger.save_account(account, now)
    programme = await programme_at(uow, now)
    base = programme.currencies.get(order.currency)
    spend_base = spend * base.base_currency_rate if base else spend
    await uow.outbox.add(
        events_pb2.PointsReversed(
            member_id=member_id,
            posting_id=posting.posting_id,
            earn_posting_id=order.posting_id,
            unit=unit,
            order_id=order_id,
            qualifying_spend_base=money(spend_base, programme.base_currency),
            points=-posting.points,
            occurred_at=_ts(now),
        )
    )
    return posting, account


async def confirm_order(
    uow: PointsUnitOfWork, member_id: str, unit: str, order_id: str, now: datetime
) -> tuple[int, Account]:
    account = await uow.ledger.account(member_id, lock=True)
    order = await uow.ledger.order(unit, order_id)
    if account is None or order is None or order.member_id != member_id:
        raise OrderNotFound(unit, order_id)
    lot = await uow.ledger.lot(member_id, order.lot_id)
    if lot is None or lot.status is not LotStatus.PENDING:
        return 0, account
    activated = await _activate(uow, account, lot, order.posting_id, now)
    await uow.ledger.save_account(account, now)
    return activated, account


async def _activate(
    uow: PointsUnitOfWork, account: Account, lot: Lot, posting_id: str, now: datetime
) -> int:
    lot.status = LotStatus.OPEN
    await uow.ledger.save_lot(account.member_id, lot)
    await uow.ledger.set_posting_pending(account.member_id, posting_id, False)
    account.pending -= lot.remaining
    account.available += lot.remaining
    await uow.outbox.add(
        events_pb2.PendingPointsActivated(
            member_id=account.member_id,
            posting_id=posting_id,
            points=lot.remaining,
            activated_at=_ts(now),
        )
    )
    return lot.remaining


# --- adjustments --------------------------------------------------------------------------------
async def adjust(
    uow: PointsUnitOfWork,
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
    programme = await programme_at(uow, now)
    if unit not in programme.units and unit != GROUP:
        raise InvalidArgument.of([FieldViolation("unit", f"unknown unit {unit!r}")])
    account = await open_account(uow, member_id, directory, now)
    if account.state in ("merged", "erased"):
        ensure_active(account)
    posting = Posting(
        posting_id=new_id(),
        member_id=member_id,
        kind=PostingKind.ADJUST,
        points=points,
        unit=unit,
        occurred_at=now,
        posted_at=now,
        programme_version=programme.version,
        reason=reason.strip(),
    )
    await uow.ledger.add_posting(posting)
    if points > 0:
        await _credit(uow, account, posting, programme.expiry_of(now))
    else:
        await _take(uow, account, -points, posting)
    await uow.ledger.save_account(account, now)
    await uow.outbox.add(
        events_pb2.PointsAdjusted(
            member_id=member_id,
            posting_id=posting.posting_id,
            unit=unit,
            points=points,
            occurred_at=_ts(now),
        )
    )
    return posting, account


# --- reads --------------------------------------------------------------------------------------
@dataclass
class BalanceView:
    account: Account
    expiring_soon: int
    until: datetime


async def balance(
    uow: PointsUnitOfWork,
    member_id: str,
    within_days: int,
    directory: MemberDirectory,
    now: datetime,
) -> BalanceView:
    if within_days < 0 or within_days > 3660:
        raise InvalidArgument.of([FieldViolation("expiring_within_days", "0 to 3660")])
    until = now + timedelta(days=within_days or 30)
    account = await readable_account(uow, member_id, directory)
    if account is None:
        return BalanceView(Account(member_id), 0, until)
    return BalanceView(account, await uow.ledger.expiring_soon(member_id, until), until)


async def view(uow: PointsUnitOfWork, account: Account, now: datetime) -> BalanceView:
    until = now + timedelta(days=30)
    return BalanceView(account, await uow.ledger.expiring_soon(account.member_id, until), until)


# --- scheduled jobs -----------------------------------------------------------------------------
@dataclass
class JobResult:
    members: int = 0
    items: int = 0
    points: int = 0
    done: bool = True


async def activate_pending_chunk(
    uow: PointsUnitOfWork, as_of: datetime, chunk: int, now: datetime
) -> JobResult:
    result = JobResult()
    members = await uow.ledger.members_with_due_pending(as_of, chunk)
    for member_id in members:
        account = await uow.ledger.account(member_id, lock=True)
        assert account is not None
        for lot, posting_id in await uow.ledger.due_pending_lots(member_id, as_of):
            result.points += await _activate(uow, account, lot, posting_id, now)
            result.items += 1
        await uow.ledger.save_account(account, now)
        result.members += 1
    result.done = len(members) < chunk
    return result


async def expire_chunk(
    uow: PointsUnitOfWork, as_of: datetime, chunk: int, now: datetime
) -> JobResult:
    """Expire the due lots of up to `chunk` members. Idempotent (only open lots with points
    left are touched) and resumable (each chunk commits; a crash loses nothing done)."""
    result = JobResult()
    members = await uow.ledger.members_with_expired_lots(as_of, chunk)
    for member_id in members:
        account = await uow.ledger.account(member_id, lock=True)
        assert account is not None
        due = [
            lot
            for lot in await uow.ledger.lots(member_id, [LotStatus.OPEN])
            if lot.expires_at is not None and lot.expires_at <= as_of
        ]
        if not due:
            continue
        points = sum(lot.remaining for lot in due)
        posting = Posting(
            posting_id=new_id(),
            member_id=member_id,
            kind=PostingKind.EXPIRE,
            points=-points,
            unit=GROUP,
            occurred_at=as_of,
            posted_at=now,
        )
        await uow.ledger.add_posting(posting)
        await uow.ledger.move(
            member_id, posting.posting_id, [(lot, -lot.remaining) for lot in due], GROUP, now
        )
        for lot in due:
            lot.remaining = 0
            lot.status = LotStatus.EXPIRED
            await uow.ledger.save_lot(member_id, lot)
        account.available -= points
        await uow.ledger.save_account(account, now)
        await uow.outbox.add(
            events_pb2.PointsExpired(
                member_id=member_id,
                posting_id=posting.posting_id,
                points=points,
                occurred_at=_ts(as_of),
            )
        )
        result.members += 1
        result.items += len(due)
        result.points += points
    result.done = len(members) < chunk
    return result


async def run_in_chunks(
    uow_factory: Callable[[], PointsUnitOfWork],
    step: Callable[[PointsUnitOfWork], Awaitable[JobResult]],
) -> JobResult:
    """Run a chunked job to the end, one transaction per chunk."""
    total = JobResult()
    while True:
        async with uow_factory() as uow:
            part = await step(uow)
            await uow.commit()
        total.members += part.members
        total.items += part.items
        total.points += part.points
        if part.done:
            return total


# --- settlement ---------------------------------------------------------------------------------
@dataclass
class UnitFigures:
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    forfeited: int = 0


@dataclass
class Settlement:
    units: dict[str, UnitFigures] = field(default_factory=dict)
    flows: list[tuple[str, str, int]] = field(default_factory=list)
    ledger_points: int = 0
    programme: Programme | None = None


async def settlement(
    uow: PointsUnitOfWork, start: datetime, end: datetime, now: datetime
) -> Settlement:
    if end <= start:
        raise InvalidArgument.of([FieldViolation("end_time", "must be after start_time")])
    raw = await uow.ledger.settlement(start, end)
    result = Settlement(ledger_points=raw["total"], programme=await programme_at(uow, now))
    for unit, kind, points in raw["by_unit_kind"]:
        figures = result.units.setdefault(unit, UnitFigures())
        if kind in ISSUING or (kind is PostingKind.PARTNER_EXCHANGE_REVERSE and points < 0):
            figures.issued += points
        elif kind in REDEEMING or kind is PostingKind.PARTNER_EXCHANGE_REVERSE:
            figures.redeemed -= points
    for unit, points in raw["expired"].items():
        result.units.setdefault(unit, UnitFigures()).expired += points
    for unit, points in raw["forfeited"].items():
        result.units.setdefault(unit, UnitFigures()).forfeited += points
    if not any(vars(result.units.get(GROUP, UnitFigures())).values()):
        # Expiry and erasure forfeits are attributed to the units that issued the points.
        result.units.pop(GROUP, None)
    result.flows = [flow for flow in raw["flows"] if flow[2]]
    return result


# --- events from other services -----------------------------------------------------------------
async def on_member_state(uow: PointsUnitOfWork, member_id: str, state: str, now: datetime) -> None:
    account = await uow.ledger.account(member_id, lock=True)
    if account is None:
        await uow.ledger.create_account(Account(member_id, state), now)
        return
    if account.state in ("merged", "erased") and state in ("active", "suspended"):
        return  # terminal states stay
    account.state = state
    await uow.ledger.save_account(account, now)


async def on_member_erased(uow: PointsUnitOfWork, member_id: str, now: datetime) -> int:
    """An erased member can never be identified or sign in again, so their points can never be
    spent: the whole balance, available and pending, is forfeited with one ERASURE_FORFEIT
    posting, lot by lot, so the settlement reports it under the units that issued the points
    (as expiry is). The account stays, erased, with the ledger (ids and amounts only).
    Idempotent: a redelivered event finds nothing left to forfeit and posts nothing. Answers
    the points forfeited."""
    account = await uow.ledger.account(member_id, lock=True)
    if account is None:
        await uow.ledger.create_account(Account(member_id, "erased"), now)
        return 0
    if account.state == "merged":
        return 0  # an absorbed member's points are the survivor's
    account.state = "erased"
    lots = await uow.ledger.lots(member_id, [LotStatus.OPEN, LotStatus.PENDING])
    forfeit = forfeit_all(lots)
    if forfeit.points:
        posting = Posting(
            posting_id=new_id(),
            member_id=member_id,
            kind=PostingKind.ERASURE_FORFEIT,
            points=-forfeit.points,
            unit=GROUP,
            occurred_at=now,
            posted_at=now,
            reason="member erased",
        )
        await uow.ledger.add_posting(posting)
        await uow.ledger.move(member_id, posting.posting_id, forfeit.moves, GROUP, now)
        for lot, _ in forfeit.moves:
            await uow.ledger.save_lot(member_id, lot)
        account.available -= forfeit.available
        account.pending -= forfeit.pending
    await uow.ledger.save_account(account, now)
    return forfeit.points


async def on_tier_changed(
    uow: PointsUnitOfWork, member_id: str, tier: str, effective_at: datetime, now: datetime
) -> None:
    await uow.ledger.record_tier_change(member_id, effective_at, tier)  # late ones too
    account = await uow.ledger.account(member_id, lock=True)
    if account is None:
        await uow.ledger.create_account(
            Account(member_id, tier=tier, tier_effective_at=effective_at), now
        )
        return
    if account.tier_effective_at is not None and account.tier_effective_at >= effective_at:
        return  # an older change arriving late
    account.tier = tier
    account.tier_effective_at = effective_at
    await uow.ledger.save_account(account, now)


async def on_member_merged(
    uow: PointsUnitOfWork, survivor_id: str, absorbed_id: str, now: datetime
) -> None:
    """Move the absorbed member's balances and lots to the survivor, with a posting on each."""
    for member_id in sorted((survivor_id, absorbed_id)):  # lock order: no deadlocks
        await uow.ledger.create_account(Account(member_id), now)
    accounts = {
        m: await uow.ledger.account(m, lock=True) for m in sorted((survivor_id, absorbed_id))
    }
    survivor, absorbed = accounts[survivor_id], accounts[absorbed_id]
    assert survivor is not None and absorbed is not None
    if absorbed.state == "merged":
        return
    moved_available, moved_pending = absorbed.available, absorbed.pending
    moved = moved_available + moved_pending
    if moved:
        for account, sign, kind in (
            (absorbed, -1, PostingKind.MERGE_OUT),
            (survivor, 1, PostingKind.MERGE_IN),
        ):
            await uow.ledger.add_posting(
                Posting(
                    posting_id=new_id(),
                    member_id=account.member_id,
                    kind=kind,
                    points=sign * moved,
                    unit=GROUP,
                    occurred_at=now,
                    posted_at=now,
                    related_posting_id=None,
                    reason=f"merge of {absorbed_id} into {survivor_id}",
                )
            )
    await uow.ledger.reassign_lots(absorbed_id, survivor_id)
    survivor.available += moved_available
    survivor.pending += moved_pending
    survivor.lifetime_earned += absorbed.lifetime_earned
    if not survivor.tier or (absorbed.tier and survivor.tier_effective_at is None):
        survivor.tier = survivor.tier or absorbed.tier
    absorbed.available = absorbed.pending = 0
    absorbed.state = "merged"
    absorbed.merged_into = survivor_id
    await uow.ledger.save_account(absorbed, now)
    await uow.ledger.save_account(survivor, now)


async def on_member_unmerged(
    uow: PointsUnitOfWork, survivor_id: str, restored_id: str, now: datetime
) -> None:
    """Undo a merge: what is left of the lots that came from the restored member goes back to
    it, each with its issuing unit, earn time, expiry and pending state unchanged (a new lot on
    the restored member; the survivor's is emptied), with an UNMERGE_OUT / UNMERGE_IN posting
    pair, like a merge a move between members and nothing for settlement. Points the survivor
    spent of those lots meanwhile stay spent: nothing is taken from the survivor's own points.
    The orders of those lots go back too (a later refund takes from the restored member), and
    so does the lifetime earned the merge added. A redelivery changes nothing."""
    for member_id in sorted((survivor_id, restored_id)):  # lock order: no deadlocks
        await uow.ledger.create_account(Account(member_id), now)
    accounts = {
        m: await uow.ledger.account(m, lock=True) for m in sorted((survivor_id, restored_id))
    }
    survivor, restored = accounts[survivor_id], accounts[restored_id]
    assert survivor is not None and restored is not None
    if restored.state != "merged" or restored.merged_into != survivor_id:
        return  # done already, or a merge this service never saw
    taken_over = await uow.ledger.lots_from(survivor_id, restored_id)
    going = [
        (lot, posting_id, available_at)
        for lot, posting_id, available_at in taken_over
        if lot.remaining > 0 and lot.status in (LotStatus.OPEN, LotStatus.PENDING)
    ]
    available = sum(lot.remaining for lot, _, _ in going if lot.status is LotStatus.OPEN)
    pending = sum(lot.remaining for lot, _, _ in going if lot.status is LotStatus.PENDING)
    reason = f"unmerge of {restored_id} from {survivor_id}"
    out = Posting(
        new_id(),
        survivor_id,
        PostingKind.UNMERGE_OUT,
        -(available + pending),
        GROUP,
        now,
        now,
        reason=reason,
    )
    into = Posting(
        new_id(),
        restored_id,
        PostingKind.UNMERGE_IN,
        available + pending,
        GROUP,
        now,
        now,
        reason=reason,
    )
    out.related_posting_id, into.related_posting_id = into.posting_id, out.posting_id
    given: list[tuple[Lot, int]] = []
    received: list[tuple[Lot, int]] = []
    renamed: dict[str, str] = {}
    for lot, posting_id, available_at in going:
        copy = Lot(
            new_id(), lot.earned_unit, lot.remaining, lot.earned_at, lot.expires_at, lot.status
        )
        await uow.ledger.add_lot(restored_id, copy, posting_id, lot.remaining, available_at)
        given.append((lot, -lot.remaining))
        received.append((copy, lot.remaining))
        renamed[lot.lot_id] = copy.lot_id
        lot.remaining = 0
        if lot.status is LotStatus.PENDING:
            lot.status = LotStatus.CANCELLED  # its points wait on the restored member now
        await uow.ledger.save_lot(survivor_id, lot)
    if going:
        await uow.ledger.add_posting(out)
        await uow.ledger.add_posting(into)
        await uow.ledger.move(survivor_id, out.posting_id, given, GROUP, now)
        await uow.ledger.move(restored_id, into.posting_id, received, GROUP, now)
    await uow.ledger.give_back_lots(
        survivor_id, restored_id, [lot.lot_id for lot, _, _ in taken_over], renamed
    )
    survivor.available -= available
    survivor.pending -= pending
    survivor.lifetime_earned = max(0, survivor.lifetime_earned - restored.lifetime_earned)
    restored.available += available
    restored.pending += pending
    restored.state = "active"
    restored.merged_into = ""
    await uow.ledger.save_account(survivor, now)
    await uow.ledger.save_account(restored, now)


# --- moving points between members and programmes ---------------------------------------------
class LimitExceeded(FailedPrecondition):
    reason = "LIMIT_EXCEEDED"


async def transfer(
    uow: PointsUnitOfWork,
    member_id: str,
    to_member_id: str,
    points: int,
    reason: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[Posting, Account]:
    """Points move with their lots' issuing unit and expiry: a transfer neither moves a unit's
    liability nor extends the points' life."""
    _positive_points(points)
    if to_member_id == member_id:
        raise InvalidArgument.of([FieldViolation("to_member", "must be another member")])
    programme = await programme_at(uow, now)
    if programme.transfer_max_per_transfer == 0:
        raise FailedPrecondition("transfers are off in this programme", reason="TRANSFERS_DISABLED")
    if points > programme.transfer_max_per_transfer:
        raise LimitExceeded(
            f"at most {programme.transfer_max_per_transfer} points per transfer",
            metadata={"limit": str(programme.transfer_max_per_transfer)},
        )
    accounts = {
        m: await open_account(uow, m, directory, now) for m in sorted((member_id, to_member_id))
    }
    sender, receiver = accounts[member_id], accounts[to_member_id]
    ensure_active(sender)
    ensure_active(receiver)
    if programme.transfer_max_per_day:
        sent = -await uow.ledger.points_since(
            member_id, PostingKind.TRANSFER_OUT, programme.start_of_day(now)
        )
        if sent + points > programme.transfer_max_per_day:
            raise LimitExceeded(
                f"at most {programme.transfer_max_per_day} points a day; {sent} sent today",
                metadata={"limit": str(programme.transfer_max_per_day), "sent_today": str(sent)},
            )
    out = Posting(new_id(), member_id, PostingKind.TRANSFER_OUT, -points, GROUP, now, now)
    into = Posting(new_id(), to_member_id, PostingKind.TRANSFER_IN, points, GROUP, now, now)
    out.related_posting_id, into.related_posting_id = into.posting_id, out.posting_id
    out.reason = into.reason = reason
    await uow.ledger.add_posting(out)
    await uow.ledger.add_posting(into)
    taken = take_oldest_first(await uow.ledger.lots(member_id, [LotStatus.OPEN]), points, member_id)
    credited: list[tuple[Lot, int]] = []
    for lot, amount in taken:
        lot.remaining -= amount
        await uow.ledger.save_lot(member_id, lot)
        received = Lot(new_id(), lot.earned_unit, amount, lot.earned_at, lot.expires_at)
        await uow.ledger.add_lot(to_member_id, received, into.posting_id, amount, None)
        credited.append((received, amount))
    await uow.ledger.move(member_id, out.posting_id, [(lot, -n) for lot, n in taken], GROUP, now)
    await uow.ledger.move(to_member_id, into.posting_id, credited, GROUP, now)
    sender.available -= points
    receiver.available += points
    await uow.ledger.save_account(sender, now)
    await uow.ledger.save_account(receiver, now)
    await uow.outbox.add(
        events_pb2.PointsTransferred(
            from_member_id=member_id,
            to_member_id=to_member_id,
            posting_id=out.posting_id,
            points=points,
            occurred_at=_ts(now),
        )
    )
    return out, sender


def _partner(programme: Programme, partner: str) -> Any:
    rule = programme.partners.get(partner)
    if rule is None:
        known = ", ".join(sorted(programme.partners))
        raise InvalidArgument.of([FieldViolation("partner", f"unknown partner; known: {known}")])
    return rule


async def exchange_to_partner(
    uow: PointsUnitOfWork,
    member_id: str,
    partner: str,
    points: int,
    partner_account: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[Posting, int, Account]:
    _positive_points(points)
    if not partner_account.strip() or len(partner_account) > 64:
        raise InvalidArgument.of(
            [FieldViolation("partner_account", "required, at most 64 characters")]
        )
    programme = await programme_at(uow, now)
    rule = _partner(programme, partner)
    problems = Violations()
    if points < rule.min_points:
        problems.add("points", f"at least {rule.min_points} points")
    elif points % rule.points_per_unit_out:
        problems.add("points", f"a multiple of {rule.points_per_unit_out} (one {partner} unit)")
    problems.raise_if_any()
    account = await open_account(uow, member_id, directory, now)
    ensure_active(account)
    unit = f"partner:{partner}"
    if rule.max_points_per_day:
        sent = -await uow.ledger.points_since(
            member_id, PostingKind.PARTNER_EXCHANGE_OUT, programme.start_of_day(now), unit
        )
        if sent + points > rule.max_points_per_day:
            raise LimitExceeded(
                f"at most {rule.max_points_per_day} points a day to {partner}; {sent} today",
                metadata={"limit": str(rule.max_points_per_day), "sent_today": str(sent)},
            )
    partner_units = points // rule.points_per_unit_out
    posting = Posting(
        new_id(),
        member_id,
        PostingKind.PARTNER_EXCHANGE_OUT,
        -points,
        unit,
        now,
        now,
        order_id=partner_account.strip(),
        programme_version=programme.version,
        breakdown={"partner": partner, "partner_units": partner_units},
    )
    await uow.ledger.add_posting(posting)
    await _take(uow, account, points, posting)
    await uow.ledger.save_account(account, now)
    await uow.outbox.add(
        events_pb2.PartnerExchanged(
            member_id=member_id,
            posting_id=posting.posting_id,
            partner=partner,
            points=-points,
            partner_units=partner_units,
            occurred_at=_ts(now),
        )
    )
    return posting, partner_units, account


async def exchange_from_partner(
    uow: PointsUnitOfWork,
    member_id: str,
    partner: str,
    partner_units: int,
    reference: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[Posting, Account]:
    _positive_points(partner_units, "partner_units")
    bounded(reference, "partner_reference")
    programme = await programme_at(uow, now)
    rule = _partner(programme, partner)
    if rule.points_per_unit_in == 0:
        raise FailedPrecondition(
            f"converting in from {partner} is off", reason="EXCHANGE_IN_DISABLED"
        )
    account = await open_account(uow, member_id, directory, now)
    ensure_active(account)
    points = partner_units * rule.points_per_unit_in
    unit = f"partner:{partner}"
    posting = Posting(
        new_id(),
        member_id,
        PostingKind.PARTNER_EXCHANGE_IN,
        points,
        unit,
        now,
        now,
        order_id=reference.strip(),
        programme_version=programme.version,
        breakdown={"partner": partner, "partner_units": partner_units},
    )
    # A partner's reference credits once: a retry with a new request id is refused.
    earlier = await uow.ledger.claim_partner_reference(
        partner, reference.strip(), member_id, posting.posting_id
    )
    if earlier is not None:
        raise PartnerReferenceUsed(partner, reference.strip(), earlier)
    await uow.ledger.add_posting(posting)
    await _credit(uow, account, posting, programme.expiry_of(now))
    await uow.ledger.save_account(account, now)
    await uow.outbox.add(
        events_pb2.PartnerExchanged(
            member_id=member_id,
            posting_id=posting.posting_id,
            partner=partner,
            points=points,
            partner_units=partner_units,
            occurred_at=_ts(now),
        )
    )
    return posting, account


async def reverse_partner_exchange(
    uow: PointsUnitOfWork, member_id: str, posting_id: str, reason: str, now: datetime
) -> tuple[Posting, int, Account]:
    account = await uow.ledger.account(member_id, lock=True)
    exchange = await uow.ledger.posting(member_id, posting_id) if account else None
    kinds = (PostingKind.PARTNER_EXCHANGE_OUT, PostingKind.PARTNER_EXCHANGE_IN)
    if account is None or exchange is None or exchange.kind not in kinds:
        raise PostingNotFound(posting_id)
    ensure_active(account)
    if await uow.ledger.undoing(member_id, posting_id, PostingKind.PARTNER_EXCHANGE_REVERSE):
        raise FailedPrecondition(
            f"exchange {posting_id} was already reversed",
            reason="ALREADY_REVERSED",
            metadata={"posting_id": posting_id},
        )
    posting = Posting(
        new_id(),
        member_id,
        PostingKind.PARTNER_EXCHANGE_REVERSE,
        0,
        exchange.unit,
        now,
        now,
        order_id=exchange.order_id,
        related_posting_id=posting_id,
        reason=reason,
        breakdown=exchange.breakdown,
    )
    expired = 0
    if exchange.kind is PostingKind.PARTNER_EXCHANGE_OUT:
        expired = await give_back(uow, account, exchange, posting, now)
    else:
        # Points converted in come back out, from their own lot first; if they were spent
        # meanwhile, the member's other points cover them (or INSUFFICIENT_POINTS).
        posting.points = -exchange.points
        await uow.ledger.add_posting(posting)
        (own_lot, _), *_ = await uow.ledger.movements(member_id, posting_id)
        await _take(uow, account, exchange.points, posting, first_lot=own_lot)
    await uow.ledger.save_account(account, now)
    units = int((exchange.breakdown or {}).get("partner_units", 0))
    await uow.outbox.add(
        events_pb2.PartnerExchanged(
            member_id=member_id,
            posting_id=posting.posting_id,
            partner=str((exchange.breakdown or {}).get("partner", "")),
            points=posting.points,
            partner_units=units if posting.points > 0 else -units,
            occurred_at=_ts(now),
        )
    )
    return posting, expired, account


# --- referrals ----------------------------------------------------------------------------------
async def record_referral(
    uow: PointsUnitOfWork,
    member_id: str,
    referrer_id: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[str, bool]:
    if member_id == referrer_id:
        raise InvalidArgument.of([FieldViolation("referrer", "a member cannot refer themselves")])
    accounts = {
        m: await open_account(uow, m, directory, now) for m in sorted((member_id, referrer_id))
    }
    ensure_active(accounts[referrer_id])
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
    referee = accounts[member_id]
    referee.referral_pending = True
    await uow.ledger.save_account(referee, now)
    return referrer_id, False


async def surviving_account(uow: PointsUnitOfWork, member_id: str) -> Account | None:
    """The account that speaks for a member now, locked: its own, or the survivor's after a
    merge (followed along a chain of merges)."""
    account = await uow.ledger.account(member_id, lock=True)
    for _ in range(MAX_MERGE_CHAIN):
        if account is None or account.state != "merged" or not account.merged_into:
            return account
        account = await uow.ledger.account(account.merged_into, lock=True)
    return account


MAX_MERGE_CHAIN = 16  # a merge chain longer than this is a loop made by bad data: stop


async def reward_referral(
    uow: PointsUnitOfWork, referee: Account, programme: Programme, now: datetime
) -> None:
    """On the referred member's first qualifying purchase: both bonuses, exactly once (the
    referral is marked rewarded in the same transaction as the earn)."""
    referral = await uow.ledger.referral(referee.member_id)
    referee.referral_pending = False
    if referral is None or referral[1] is not None:
        return
    # The referee's account is locked already; a deadlock with a transaction locking the two
    # the other way round aborts one of them, and run_idempotent runs it again.
    # A referrer merged since is paid as the survivor; one merged into the referee is the
    # referee (no one refers themselves).
    referrer = await surviving_account(uow, referral[0])
    if referrer is not None and referrer.member_id == referee.member_id:
        referrer = None
    paid_as = referrer.member_id if referrer else referral[0]
    await uow.ledger.mark_referral_rewarded(referee.member_id, now)
    for account, points in (
        (referee, programme.referee_points),
        (referrer, programme.referrer_points),
    ):
        if account is None or points <= 0 or account.state != "active":
            continue
        posting = Posting(
            new_id(),
            account.member_id,
            PostingKind.REFERRAL_BONUS,
            points,
            GROUP,
            now,
            now,
            programme_version=programme.version,
            reason=f"referral of {referee.member_id} by {paid_as}",
        )
        await uow.ledger.add_posting(posting)
        await _credit(uow, account, posting, programme.expiry_of(now))
        if account is not referee:  # the earn saves the referee's account
            await uow.ledger.save_account(account, now)
    await uow.outbox.add(
        events_pb2.ReferralRewarded(
            referrer_member_id=paid_as,
            referee_member_id=referee.member_id,
            referrer_points=programme.referrer_points,
            referee_points=programme.referee_points,
            occurred_at=_ts(now),
        )
    )
