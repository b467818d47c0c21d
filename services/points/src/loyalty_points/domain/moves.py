"""Rules that move points between two accounts: transfers, referral bonuses, merges and
unmerges. Each changes both aggregates (a transaction holds both accounts' locks)."""

from __future__ import annotations

from datetime import datetime

from loyalty_points.domain import events
from loyalty_points.domain.account import ACTIVE, MERGED, Account
from loyalty_points.domain.errors import LimitExceeded
from loyalty_points.domain.ledger import (
    GROUP,
    Lot,
    LotStatus,
    Posting,
    PostingKind,
    new_id,
    take_soonest_expiring_first,
)
from loyalty_points.domain.programme import Programme


def transfer(
    sender: Account,
    receiver: Account,
    points: int,
    *,
    reason: str,
    lots: list[Lot],
    sent_today: int,
    programme: Programme,
    now: datetime,
) -> Posting:
    """Points move with their lots' issuing unit and expiry: a transfer neither moves a unit's
    liability nor extends the points' life. `lots`: the sender's open lots."""
    sender.ensure_active()
    receiver.ensure_active()
    limit = programme.transfer_max_per_day
    if limit and sent_today + points > limit:
        raise LimitExceeded(
            f"at most {limit} points a day; {sent_today} sent today",
            metadata={"limit": str(limit), "sent_today": str(sent_today)},
        )
    out = sender.new_posting(PostingKind.TRANSFER_OUT, -points, GROUP, now)
    into = receiver.new_posting(PostingKind.TRANSFER_IN, points, GROUP, now)
    out.related_posting_id, into.related_posting_id = into.posting_id, out.posting_id
    out.reason = into.reason = reason
    sender.post(out)
    receiver.post(into)
    for lot, amount in take_soonest_expiring_first(lots, points, sender.member_id):
        lot.remaining -= amount
        sender.touch(lot)
        sender.move(out, lot, -amount, GROUP, now)
        received = Lot(new_id(), lot.earned_unit, amount, lot.earned_at, lot.expires_at)
        received.posting_id = into.posting_id
        receiver.changes.new_lots.append((received, amount))
        receiver.move(into, received, amount, GROUP, now)
    sender.available -= points
    receiver.available += points
    sender.events.append(
        events.PointsTransferred(sender.member_id, receiver.member_id, out.posting_id, points, now)
    )
    return out


def reward_referral(
    referee: Account,
    referrer: Account | None,
    paid_as: str,
    programme: Programme,
    now: datetime,
) -> None:
    """On the referred member's first qualifying purchase: both bonuses, to those of the two
    still active (`referrer` None: no account to pay). Paid once: the caller marks the
    referral rewarded in the same transaction."""
    referee.referral_pending = False
    for account, points in (
        (referee, programme.referee_points),
        (referrer, programme.referrer_points),
    ):
        if account is None or points <= 0 or account.state != ACTIVE:
            continue
        posting = account.new_posting(PostingKind.REFERRAL_BONUS, points, GROUP, now)
        posting.programme_version = programme.version
        posting.reason = f"referral of {referee.member_id} by {paid_as}"
        account.credit(account.post(posting), programme.expiry_of(now))
    referee.events.append(
        events.ReferralRewarded(
            paid_as, referee.member_id, programme.referrer_points, programme.referee_points, now
        )
    )


def merge(survivor: Account, absorbed: Account, now: datetime) -> bool:
    """The absorbed member's balances, lots and orders become the survivor's, with a
    MERGE_OUT / MERGE_IN posting pair; the absorbed account is merged from then on. False:
    merged already (a redelivered event)."""
    if absorbed.state == MERGED:
        return False
    moved = absorbed.available + absorbed.pending
    if moved:
        reason = f"merge of {absorbed.member_id} into {survivor.member_id}"
        for account, kind, points in (
            (absorbed, PostingKind.MERGE_OUT, -moved),
            (survivor, PostingKind.MERGE_IN, moved),
        ):
            account.post(account.new_posting(kind, points, GROUP, now)).reason = reason
    survivor.changes.absorbed.append(absorbed.member_id)
    survivor.available += absorbed.available
    survivor.pending += absorbed.pending
    survivor.lifetime_earned += absorbed.lifetime_earned
    if not survivor.tier or (absorbed.tier and survivor.tier_effective_at is None):
        survivor.tier = survivor.tier or absorbed.tier
    absorbed.available = absorbed.pending = 0
    absorbed.state = MERGED
    absorbed.merged_into = survivor.member_id
    return True


def unmerge(survivor: Account, restored: Account, taken_over: list[Lot], now: datetime) -> bool:
    """Undo a merge: what is left of the lots the survivor took over from the restored member
    (`taken_over`) goes back to it, each with its issuing unit, earn time, expiry and pending
    state (a new lot there; the survivor's is emptied), with an UNMERGE_OUT / UNMERGE_IN
    posting pair: like a merge, a move between members and nothing for settlement. Points the
    survivor spent of those lots meanwhile stay spent; nothing is taken from its own points.
    The orders of those lots go back, and so does the lifetime earned the merge added.
    False: done already, or a merge this service never saw."""
    if restored.state != MERGED or restored.merged_into != survivor.member_id:
        return False
    going = [
        lot
        for lot in taken_over
        if lot.remaining > 0 and lot.status in (LotStatus.OPEN, LotStatus.PENDING)
    ]
    available = sum(lot.remaining for lot in going if lot.status is LotStatus.OPEN)
    pending = sum(lot.remaining for lot in going if lot.status is LotStatus.PENDING)
    reason = f"unmerge of {restored.member_id} from {survivor.member_id}"
    out = survivor.new_posting(PostingKind.UNMERGE_OUT, -(available + pending), GROUP, now)
    into = restored.new_posting(PostingKind.UNMERGE_IN, available + pending, GROUP, now)
    out.related_posting_id, into.related_posting_id = into.posting_id, out.posting_id
    out.reason = into.reason = reason
    if going:
        survivor.post(out)
        restored.post(into)
    renamed: dict[str, str] = {}
    for lot in going:
        copy = Lot(
            new_id(),
            lot.earned_unit,
            lot.remaining,
            lot.earned_at,
            lot.expires_at,
            lot.status,
            posting_id=lot.posting_id,
            available_at=lot.available_at,
        )
        restored.changes.new_lots.append((copy, lot.remaining))
        survivor.move(out, lot, -lot.remaining, GROUP, now)
        restored.move(into, copy, lot.remaining, GROUP, now)
        renamed[lot.lot_id] = copy.lot_id
        lot.remaining = 0
        if lot.status is LotStatus.PENDING:
            lot.status = LotStatus.CANCELLED  # its points wait on the restored member now
        survivor.touch(lot)
    survivor.changes.given_back.append(
        (restored.member_id, [lot.lot_id for lot in taken_over], renamed)
    )
    survivor.available -= available
    survivor.pending -= pending
    survivor.lifetime_earned = max(0, survivor.lifetime_earned - restored.lifetime_earned)
    restored.available += available
    restored.pending += pending
    restored.state = ACTIVE
    restored.merged_into = ""
    return True
