"""Moving points: between members (transfers) and to and from partner programmes."""

from __future__ import annotations

from datetime import datetime

from loyalty_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument
from loyalty_kit.validation import bounded

from loyalty_points.domain import moves, partners
from loyalty_points.domain.account import Account
from loyalty_points.domain.errors import LimitExceeded, PartnerReferenceUsed, PostingNotFound
from loyalty_points.domain.ledger import LotStatus, Posting, PostingKind
from loyalty_points.service_layer.accounts import (
    check_points,
    open_account,
    open_accounts,
    programme_at,
)
from loyalty_points.service_layer.ports import MemberDirectory, PointsWork


async def transfer(
    uow: PointsWork,
    member_id: str,
    to_member_id: str,
    points: int,
    reason: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[Posting, Account]:
    check_points(points)
    if to_member_id == member_id:
        raise InvalidArgument.of([FieldViolation("to_member", "must be another member")])
    programme = await programme_at(uow.ledger, now)
    if programme.transfer_max_per_transfer == 0:
        raise FailedPrecondition("transfers are off in this programme", reason="TRANSFERS_DISABLED")
    if points > programme.transfer_max_per_transfer:
        raise LimitExceeded(
            f"at most {programme.transfer_max_per_transfer} points per transfer",
            metadata={"limit": str(programme.transfer_max_per_transfer)},
        )
    sender, receiver = await open_accounts(uow.ledger, (member_id, to_member_id), directory, now)
    sender.ensure_active()
    receiver.ensure_active()
    sent_today = 0
    if programme.transfer_max_per_day:
        since = programme.start_of_day(now)
        sent_today = -await uow.ledger.points_since(member_id, PostingKind.TRANSFER_OUT, since)
    posting = moves.transfer(
        sender,
        receiver,
        points,
        reason=reason,
        lots=await uow.ledger.lots(member_id, [LotStatus.OPEN]),
        sent_today=sent_today,
        programme=programme,
        now=now,
    )
    await uow.ledger.save(sender, now)
    await uow.ledger.save(receiver, now)
    return posting, sender


async def exchange_to_partner(
    uow: PointsWork,
    member_id: str,
    partner: str,
    points: int,
    partner_account: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[Posting, int, Account]:
    check_points(points)
    if not partner_account.strip() or len(partner_account) > 64:
        raise InvalidArgument.of(
            [FieldViolation("partner_account", "required, at most 64 characters")]
        )
    programme = await programme_at(uow.ledger, now)
    rule = partners.partner_rule(programme, partner)
    partners.check_points_out(rule, points)
    account = await open_account(uow.ledger, member_id, directory, now)
    account.ensure_active()
    sent_today = 0
    if rule.max_points_per_day:
        sent_today = -await uow.ledger.points_since(
            member_id,
            PostingKind.PARTNER_EXCHANGE_OUT,
            programme.start_of_day(now),
            partners.partner_unit(partner),
        )
    posting, partner_units = partners.exchange_to_partner(
        account,
        rule,
        points,
        partner_account=partner_account.strip(),
        lots=await uow.ledger.lots(member_id, [LotStatus.OPEN]),
        sent_today=sent_today,
        programme=programme,
        now=now,
    )
    await uow.ledger.save(account, now)
    return posting, partner_units, account


async def exchange_from_partner(
    uow: PointsWork,
    member_id: str,
    partner: str,
    partner_units: int,
    reference: str,
    directory: MemberDirectory,
    now: datetime,
) -> tuple[Posting, Account]:
    check_points(partner_units, "partner_units")
    bounded(reference, "partner_reference")
    programme = await programme_at(uow.ledger, now)
    rule = partners.partner_rule(programme, partner)
    partners.check_exchange_in(rule)
    account = await open_account(uow.ledger, member_id, directory, now)
    posting = partners.exchange_from_partner(
        account, rule, partner_units, reference=reference.strip(), programme=programme, now=now
    )
    # A partner's reference credits once: a retry with a new request id is refused.
    earlier = await uow.ledger.claim_partner_reference(
        partner, reference.strip(), member_id, posting.posting_id
    )
    if earlier is not None:
        raise PartnerReferenceUsed(partner, reference.strip(), earlier)
    await uow.ledger.save(account, now)
    return posting, account


async def reverse_partner_exchange(
    uow: PointsWork, member_id: str, posting_id: str, reason: str, now: datetime
) -> tuple[Posting, int, Account]:
    account = await uow.ledger.account(member_id, lock=True)
    exchange = await uow.ledger.posting(member_id, posting_id) if account else None
    kinds = (PostingKind.PARTNER_EXCHANGE_OUT, PostingKind.PARTNER_EXCHANGE_IN)
    if account is None or exchange is None or exchange.kind not in kinds:
        raise PostingNotFound(posting_id)
    account.ensure_active()
    converted_in = exchange.kind is PostingKind.PARTNER_EXCHANGE_IN
    posting, expired = partners.reverse_exchange(
        account,
        exchange,
        reversed_by=await uow.ledger.undoing(
            member_id, posting_id, PostingKind.PARTNER_EXCHANGE_REVERSE
        ),
        returning=await uow.ledger.moved_lots(member_id, posting_id),
        lots=await uow.ledger.lots(member_id, [LotStatus.OPEN]) if converted_in else [],
        reason=reason,
        now=now,
    )
    await uow.ledger.save(account, now)
    return posting, expired, account
