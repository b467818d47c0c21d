"""Past orders replayed as offline receipts (identity's LegacyOrdersImported in mode REPLAY, read
by the kit's `kernel.orders.past_orders`), and how each is decided. Pure: no I/O.

An order earns as a receipt recorded late does: under the programme version in force when it
happened, at the tier the member held then, with the campaigns then running; one line of the
order's amount at its unit. The points are the unit's to fund, as any earn's. Once per (unit,
order ID), through the order claims every earn makes: a second import, a redelivery, or an
order that already earned live earns nothing more. Its PointsEarned goes out as any earn's, so
tiers counts the purchase (once: tiers leaves REPLAY chunks to points).

- The points expire by the programme's rule from the order's time. Points whose expiry has
  passed are recorded as earned **and expired at once**: the EARN posting, then an EXPIRE
  posting dated at that expiry (posted now) that empties the lot. The ledger tells what would
  have happened: the unit issued them, they lapsed unused (the settlement shows both under the
  unit), the balance gains nothing, and the purchase still counts for tiers in its own year.
- Points of a unit with pending days are pending until the order's time plus those days, like
  any earn; an order older than that is available at once.
- No referral bonus: a purchase from before the platform is no first purchase on it.
- Skipped and counted, never an error: an order from before the first programme version
  (`before_programme`: publish a first version starting early enough to replay it), a unit or a
  currency that programme version did not have, an amount of zero (an earn needs one), a member
  suspended or erased (`member_not_active`; the order is not claimed, so a later import earns
  it once the member is active again).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from loyalty_kit.kernel.orders import PastOrder

from loyalty_points.domain import events
from loyalty_points.domain.account import ACTIVE, Account
from loyalty_points.domain.ledger import GROUP, Lot, LotStatus, Posting, PostingKind, new_id
from loyalty_points.domain.money import Amount
from loyalty_points.domain.orders import OrderRecord
from loyalty_points.domain.programme import Earned, Line, Programme, compute_earn

LINE_ID = "1"  # a replayed order is one line of its amount


class Skip(StrEnum):
    BEFORE_PROGRAMME = "before_programme"
    UNIT_NOT_IN_PROGRAMME = "unit_not_in_programme"
    CURRENCY_NOT_PRICED = "currency_not_priced"
    ZERO_AMOUNT = "zero_amount"
    MEMBER_NOT_ACTIVE = "member_not_active"


@dataclass(frozen=True)
class Receipt:
    """A past order ready to earn (once its order claim is new)."""

    order: PastOrder
    unit: str
    holder: str  # the account that earns: the member, or the survivor it was merged into
    programme: Programme
    earned: Earned
    record: OrderRecord  # the order claim, naming the posting and lot to come

    @property
    def expires_at(self) -> datetime | None:
        """When its points expire: the programme's rule from the order's time."""
        return self.programme.expiry_of(self.order.occurred_at)

    def lapsed(self, now: datetime) -> bool:
        """Whether its points had expired by `now` (they are earned and expired at once)."""
        return self.expires_at is not None and self.expires_at <= now


def receipt(
    order: PastOrder,
    unit: str,
    account: Account,
    programme: Programme | None,
    tier: str,
    badges: AbstractSet[str] = frozenset(),
) -> Receipt | Skip:
    """How `order` earns for `account`, under `programme` (the version in force when it
    happened) at `tier` and with `badges` (those the member held then), or why it does not."""
    if programme is None:
        return Skip.BEFORE_PROGRAMME
    if unit not in programme.units:
        return Skip.UNIT_NOT_IN_PROGRAMME
    if order.currency not in programme.currencies:
        return Skip.CURRENCY_NOT_PRICED
    if order.amount <= 0:
        return Skip.ZERO_AMOUNT
    if account.state != ACTIVE:
        return Skip.MEMBER_NOT_ACTIVE
    lines = [Line(LINE_ID, Amount(order.currency, order.amount))]
    earned = compute_earn(programme, unit, tier, lines, order.occurred_at, badges)
    record = OrderRecord.earned(
        unit, order.order_id, account.member_id, new_id(), new_id(), lines, earned
    )
    return Receipt(order, unit, account.member_id, programme, earned, record)


def tier_then(account: Account, changes: list[tuple[datetime, str]], at: datetime) -> str:
    """The tier the member held at `at` (what an earn's multiplier follows): the account's own
    for anything since its last change, else the last change by then in `changes` (the
    member's tier changes in time order; '' before any: the entry tier)."""
    known = account.tier_known_at(at)
    if known is not None:
        return known
    held = ""
    for effective_at, tier in changes:
        if effective_at > at:
            break
        held = tier
    return held


def earn_replayed(account: Account, receipt: Receipt, reason: str, now: datetime) -> Posting:
    """The receipt's points for `account` (the holder): earned as a receipt recorded late is,
    pending until its unit's pending days from the order's time have passed; points whose
    expiry has passed already are expired at once, by an EXPIRE posting dated at that expiry.
    Written as credits (postings, a new lot, its movements): a chunk's are saved in a few
    statements. The posting and lot are the ones the order's claim names."""
    order, programme, earned = receipt.record, receipt.programme, receipt.earned
    occurred_at = receipt.order.occurred_at
    available_at = programme.available_at(order.unit, occurred_at)
    expires_at, lapsed = receipt.expires_at, receipt.lapsed(now)
    pending = not lapsed and available_at is not None and available_at > now
    posting = account.post(
        Posting(
            order.posting_id,
            account.member_id,
            PostingKind.EARN,
            earned.points,
            order.unit,
            occurred_at,
            now,
            order_id=order.order_id,
            pending=pending,
            available_at=available_at if pending else None,
            programme_version=programme.version,
            breakdown=earned.as_json(),
            reason=reason,
        )
    )
    base = earned.base_spend or Amount(programme.base_currency, programme.to_base(earned.spend))
    account.events.append(
        events.PointsEarned(
            account.member_id,
            posting.posting_id,
            order.unit,
            order.order_id,
            earned.spend,
            base,
            earned.points,
            pending,
            occurred_at,
        )
    )
    account.lifetime_earned += earned.points
    if earned.points <= 0:
        return posting
    status = LotStatus.PENDING if pending else LotStatus.OPEN
    lot = Lot(order.lot_id, order.unit, earned.points, occurred_at, expires_at, status)
    lot.posting_id, lot.available_at = posting.posting_id, available_at
    account.changes.new_lots.append((lot, earned.points))
    account.move(posting, lot, earned.points, order.unit, now)
    if pending:
        account.pending += earned.points
    else:
        account.available += earned.points
    if lapsed:
        assert expires_at is not None
        _expire_at_once(account, posting, lot, expires_at, now)
    return posting


def _expire_at_once(
    account: Account, earn: Posting, lot: Lot, expired_at: datetime, now: datetime
) -> None:
    """The new lot's points lapse now, as they would have at `expired_at`."""
    points = lot.remaining
    expiry = account.new_posting(PostingKind.EXPIRE, -points, GROUP, now)
    expiry.occurred_at, expiry.related_posting_id = expired_at, earn.posting_id
    expiry.reason = "expired before the order was replayed"
    account.post(expiry)
    account.move(expiry, lot, -points, GROUP, now)
    lot.remaining, lot.status = 0, LotStatus.EXPIRED
    account.available -= points
    account.events.append(
        events.PointsExpired(account.member_id, expiry.posting_id, points, expired_at)
    )
