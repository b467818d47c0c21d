"""Exchanges with partner programmes (积分互通): points out to a partner, a partner's units in,
and the reversal of either."""

from __future__ import annotations

from datetime import datetime

from loyalty_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, Violations

from loyalty_points.domain import events
from loyalty_points.domain.account import Account
from loyalty_points.domain.errors import AlreadyReversed, LimitExceeded
from loyalty_points.domain.ledger import Lot, Posting, PostingKind
from loyalty_points.domain.programme import PartnerRule, Programme


def partner_unit(partner: str) -> str:
    """The unit a partner's exchanges are posted at."""
    return f"partner:{partner}"


def partner_rule(programme: Programme, partner: str) -> PartnerRule:
    rule = programme.partners.get(partner)
    if rule is None:
        known = ", ".join(sorted(programme.partners))
        raise InvalidArgument.of([FieldViolation("partner", f"unknown partner; known: {known}")])
    return rule


def check_points_out(rule: PartnerRule, points: int) -> None:
    """At least the partner's minimum, in whole partner units."""
    problems = Violations()
    if points < rule.min_points:
        problems.add("points", f"at least {rule.min_points} points")
    elif points % rule.points_per_unit_out:
        problems.add(
            "points", f"a multiple of {rule.points_per_unit_out} (one {rule.partner} unit)"
        )
    problems.raise_if_any()


def check_exchange_in(rule: PartnerRule) -> None:
    if rule.points_per_unit_in == 0:
        raise FailedPrecondition(
            f"converting in from {rule.partner} is off", reason="EXCHANGE_IN_DISABLED"
        )


def exchange_to_partner(
    account: Account,
    rule: PartnerRule,
    points: int,
    *,
    partner_account: str,
    lots: list[Lot],
    sent_today: int,
    programme: Programme,
    now: datetime,
) -> tuple[Posting, int]:
    """Points out to a partner programme, within its daily limit (`sent_today`: points sent
    to it today); answers the posting and the partner's units."""
    account.ensure_active()
    if rule.max_points_per_day and sent_today + points > rule.max_points_per_day:
        raise LimitExceeded(
            f"at most {rule.max_points_per_day} points a day to {rule.partner}; {sent_today} today",
            metadata={"limit": str(rule.max_points_per_day), "sent_today": str(sent_today)},
        )
    partner_units = points // rule.points_per_unit_out
    posting = account.new_posting(
        PostingKind.PARTNER_EXCHANGE_OUT, -points, partner_unit(rule.partner), now
    )
    posting.order_id = partner_account
    posting.programme_version = programme.version
    posting.breakdown = {"partner": rule.partner, "partner_units": partner_units}
    account.take(points, account.post(posting), lots)
    account.events.append(
        events.PartnerExchanged(
            account.member_id, posting.posting_id, rule.partner, -points, partner_units, now
        )
    )
    return posting, partner_units


def exchange_from_partner(
    account: Account,
    rule: PartnerRule,
    partner_units: int,
    *,
    reference: str,
    programme: Programme,
    now: datetime,
) -> Posting:
    """A partner's units converted in, as new points here."""
    account.ensure_active()
    points = partner_units * rule.points_per_unit_in
    posting = account.new_posting(
        PostingKind.PARTNER_EXCHANGE_IN, points, partner_unit(rule.partner), now
    )
    posting.order_id = reference
    posting.programme_version = programme.version
    posting.breakdown = {"partner": rule.partner, "partner_units": partner_units}
    account.credit(account.post(posting), programme.expiry_of(now))
    account.events.append(
        events.PartnerExchanged(
            account.member_id, posting.posting_id, rule.partner, points, partner_units, now
        )
    )
    return posting


def reverse_exchange(
    account: Account,
    exchange: Posting,
    *,
    reversed_by: Posting | None,
    returning: list[tuple[Lot, int]],
    lots: list[Lot],
    reason: str,
    now: datetime,
) -> tuple[Posting, int]:
    """Undo an exchange: points sent out come back to their lots (`Account.give_back`);
    points converted in go out again, from their own lot first (if they were spent meanwhile,
    the member's other points cover them, or INSUFFICIENT_POINTS). `returning`: the lots the
    exchange moved; `lots`: the member's open lots. Answers the posting and the points that
    expired again at once."""
    account.ensure_active()
    if reversed_by is not None:
        raise AlreadyReversed(exchange.posting_id)
    posting = account.new_posting(PostingKind.PARTNER_EXCHANGE_REVERSE, 0, exchange.unit, now)
    posting.order_id, posting.related_posting_id = exchange.order_id, exchange.posting_id
    posting.reason, posting.breakdown = reason, exchange.breakdown
    expired = 0
    if exchange.kind is PostingKind.PARTNER_EXCHANGE_OUT:
        expired = account.give_back(returning, posting, now)
    else:
        posting.points = -exchange.points
        account.post(posting)
        own_lot = returning[0][0].lot_id
        account.take(exchange.points, posting, lots, first=own_lot)
    units = int((exchange.breakdown or {}).get("partner_units", 0))
    account.events.append(
        events.PartnerExchanged(
            account.member_id,
            posting.posting_id,
            str((exchange.breakdown or {}).get("partner", "")),
            posting.points,
            units if posting.points > 0 else -units,
            now,
        )
    )
    return posting, expired
