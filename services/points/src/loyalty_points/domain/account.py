"""The account aggregate: a member's balances and the ledger entries that change them.

Every method checks its rule, writes its postings and lot movements into `changes` (which the
repository saves in one go), keeps `available`, `pending` and `lifetime_earned` equal to what
the lots hold, and appends a plain event to `events` (which the unit of work hands to the
outbox). Lots are loaded by the caller and passed in: the aggregate never does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loyalty_points.domain import events
from loyalty_points.domain.activities import Award, RecordedActivity
from loyalty_points.domain.errors import (
    MemberNotActive,
    RedemptionAlreadyCancelled,
)
from loyalty_points.domain.ledger import (
    GROUP,
    Changes,
    EarnEntry,
    Lot,
    LotStatus,
    Move,
    Posting,
    PostingKind,
    forfeit_all,
    new_id,
    take_soonest_expiring_first,
)
from loyalty_points.domain.money import Amount
from loyalty_points.domain.orders import OrderRecord, Refund
from loyalty_points.domain.programme import Earned, Line, Programme

ACTIVE, SUSPENDED, MERGED, ERASED = "active", "suspended", "merged", "erased"


@dataclass
class Account:
    member_id: str
    state: str = ACTIVE
    merged_into: str = ""
    tier: str = ""
    tier_effective_at: datetime | None = None
    available: int = 0
    pending: int = 0
    lifetime_earned: int = 0
    referral_pending: bool = False
    changes: Changes = field(default_factory=Changes, repr=False, compare=False)
    events: list[events.Event] = field(default_factory=list, repr=False, compare=False)

    # --- states -------------------------------------------------------------------------------
    def ensure_active(self) -> None:
        if self.state != ACTIVE:
            raise MemberNotActive(self.member_id, self.state, self.merged_into)

    def ensure_not_merged(self) -> None:
        """An absorbed member is refused on reads as on writes (MEMBER_MERGED naming the
        survivor): a stale id never reads as an empty account."""
        if self.state == MERGED:
            raise MemberNotActive(self.member_id, self.state, self.merged_into)

    def follow_state(self, state: str) -> bool:
        """Identity's word on the member (suspended, reactivated); merged and erased stay."""
        if self.state in (MERGED, ERASED) and state in (ACTIVE, SUSPENDED):
            return False
        self.state = state
        return True

    def change_tier(self, tier: str, effective_at: datetime) -> bool:
        """A tier change from the tiers service; an older one arriving late changes nothing."""
        if self.tier_effective_at is not None and self.tier_effective_at >= effective_at:
            return False
        self.tier, self.tier_effective_at = tier, effective_at
        return True

    def tier_known_at(self, at: datetime) -> str | None:
        """The tier held at `at` if the account knows it without a look-up (anything since the
        last change); None: ask the history."""
        if self.tier_effective_at is None or at >= self.tier_effective_at:
            return self.tier
        return None

    # --- bookkeeping --------------------------------------------------------------------------
    def post(self, posting: Posting) -> Posting:
        self.changes.postings.append(posting)
        return posting

    def new_posting(self, kind: PostingKind, points: int, unit: str, now: datetime) -> Posting:
        return Posting(new_id(), self.member_id, kind, points, unit, now, now)

    def move(self, posting: Posting, lot: Lot, points: int, unit: str, at: datetime) -> None:
        self.changes.moves.append(Move(posting.posting_id, lot, points, unit, at))

    def touch(self, lot: Lot) -> None:
        self.changes.lots[lot.lot_id] = lot

    def credit(self, posting: Posting, expires_at: datetime | None) -> None:
        """Points a posting adds to the member: a new open lot at the posting's unit."""
        lot = Lot(new_id(), posting.unit, posting.points, posting.posted_at, expires_at)
        lot.posting_id = posting.posting_id
        self.changes.new_lots.append((lot, posting.points))
        self.move(posting, lot, posting.points, posting.unit, posting.posted_at)
        self.available += posting.points

    def take(
        self, points: int, posting: Posting, lots: list[Lot], first: str | None = None
    ) -> None:
        taken = take_soonest_expiring_first(lots, points, self.member_id, first=first)
        for lot, amount in taken:
            lot.remaining -= amount
            self.touch(lot)
            self.move(posting, lot, -amount, posting.unit, posting.posted_at)
        self.available -= points

    # --- earning ------------------------------------------------------------------------------
    def earn(
        self,
        earned: Earned,
        *,
        unit: str,
        channel: str,
        order_id: str,
        lines: list[Line],
        occurred_at: datetime,
        programme: Programme,
        now: datetime,
    ) -> tuple[Posting, OrderRecord]:
        """An order's points, pending until the unit's pending days have passed."""
        self.ensure_active()
        available_at = programme.available_at(unit, occurred_at)
        pending = available_at is not None and available_at > now
        posting = Posting(
            posting_id=new_id(),
            member_id=self.member_id,
            kind=PostingKind.EARN,
            points=earned.points,
            unit=unit,
            channel=channel,
            order_id=order_id,
            occurred_at=occurred_at,
            posted_at=now,
            pending=pending,
            available_at=available_at if pending else None,
            programme_version=programme.version,
            breakdown=earned.as_json(),
        )
        lot = Lot(
            new_id(),
            unit,
            earned.points,
            occurred_at,
            programme.expiry_of(occurred_at),
            LotStatus.PENDING if pending else LotStatus.OPEN,
            posting_id=posting.posting_id,
            available_at=available_at,
        )
        self.changes.earn = EarnEntry(posting, lot)
        if pending:
            self.pending += earned.points
        else:
            self.available += earned.points
        self.lifetime_earned += earned.points
        base = earned.base_spend or Amount(programme.base_currency, programme.to_base(earned.spend))
        self.events.append(
            events.PointsEarned(
                self.member_id,
                posting.posting_id,
                unit,
                order_id,
                earned.spend,
                base,
                earned.points,
                pending,
                occurred_at,
            )
        )
        order = OrderRecord.earned(
            unit, order_id, self.member_id, posting.posting_id, lot.lot_id, lines, earned
        )
        return posting, order

    def activate(self, lot: Lot, now: datetime) -> int:
        """A pending lot's points become available (its pending days have passed, or the unit
        confirmed the order)."""
        lot.status = LotStatus.OPEN
        self.touch(lot)
        self.changes.settled.append(lot.posting_id)
        self.pending -= lot.remaining
        self.available += lot.remaining
        self.events.append(
            events.PendingPointsActivated(self.member_id, lot.posting_id, lot.remaining, now)
        )
        return lot.remaining

    def reverse(
        self,
        order: OrderRecord,
        refund: Refund,
        *,
        earn_lot: Lot | None,
        lots: list[Lot],
        reason: str,
        programme: Programme,
        now: datetime,
    ) -> Posting:
        """A refund takes back the points of the refunded lines: pending ones are cancelled
        first, then available ones from the earn's own lot first; points already spent are
        reported as unrecovered (the balance never goes negative)."""
        posting = Posting(
            new_id(),
            self.member_id,
            PostingKind.REVERSE,
            0,
            order.unit,
            now,
            now,
            order_id=order.order_id,
            related_posting_id=order.posting_id,
            reason=reason,
        )
        taken_pending = 0
        if earn_lot is not None and earn_lot.status is LotStatus.PENDING:
            taken_pending = min(refund.points, earn_lot.remaining)
            earn_lot.remaining -= taken_pending
            if earn_lot.remaining == 0:
                earn_lot.status = LotStatus.CANCELLED
            self.touch(earn_lot)
            self.move(posting, earn_lot, -taken_pending, order.unit, now)
            self.pending -= taken_pending
        rest = refund.points - taken_pending
        recoverable = min(rest, self.available)
        posting.points = -(taken_pending + recoverable)
        posting.unrecovered_points = rest - recoverable
        self.post(posting)
        if recoverable:
            self.take(recoverable, posting, lots, first=order.lot_id)
        self.lifetime_earned -= refund.points
        base = programme.currencies.get(order.currency)
        spend_base = refund.spend * base.base_currency_rate if base else refund.spend
        self.events.append(
            events.PointsReversed(
                self.member_id,
                posting.posting_id,
                order.posting_id,
                order.unit,
                order.order_id,
                Amount(programme.base_currency, spend_base),
                -posting.points,
                now,
            )
        )
        return posting

    # --- spending -----------------------------------------------------------------------------
    def redeem(
        self,
        points: int,
        *,
        unit: str,
        channel: str,
        order_id: str,
        lots: list[Lot],
        programme: Programme,
        now: datetime,
    ) -> Posting:
        self.ensure_active()
        posting = self.new_posting(PostingKind.REDEEM, -points, unit, now)
        posting.channel, posting.order_id = channel, order_id
        posting.programme_version = programme.version
        self.take(points, self.post(posting), lots)
        self.events.append(
            events.PointsRedeemed(self.member_id, posting.posting_id, unit, points, now)
        )
        return posting

    def cancel_redemption(
        self,
        redemption: Posting,
        *,
        cancelled_by: Posting | None,
        returning: list[tuple[Lot, int]],
        reason: str,
        now: datetime,
    ) -> tuple[Posting, int]:
        """Give a redemption's points back (see `give_back`); answers the posting and the
        points that expired again at once."""
        self.ensure_active()
        if cancelled_by is not None:
            raise RedemptionAlreadyCancelled(redemption.posting_id)
        posting = self.new_posting(PostingKind.REDEMPTION_CANCEL, 0, redemption.unit, now)
        posting.channel, posting.order_id = redemption.channel, redemption.order_id
        posting.related_posting_id, posting.reason = redemption.posting_id, reason
        expired = self.give_back(returning, posting, now)
        self.events.append(
            events.RedemptionCancelled(
                self.member_id, posting.posting_id, redemption.posting_id, posting.points, now
            )
        )
        return posting, expired

    def give_back(self, returning: list[tuple[Lot, int]], posting: Posting, now: datetime) -> int:
        """Undo a consuming posting (a redemption, an exchange out), given the lots it took from
        and how much (negative): every point goes back to the lot it came from, so the books
        read as if it never happened. Points whose lot has expired since would have expired
        with it: they expire again at once, with an expiry posting of their own that the
        settlement attributes to the unit that issued them. Answers the points that expired."""
        returned: list[tuple[Lot, int]] = []
        lapsed: list[tuple[Lot, int]] = []
        for lot, moved in returning:
            returned.append((lot, -moved))
            if lot.status is LotStatus.EXPIRED or (
                lot.expires_at is not None and lot.expires_at <= now
            ):
                lapsed.append((lot, -moved))
            else:
                lot.remaining += -moved
                self.touch(lot)
        posting.points = sum(n for _, n in returned)
        self.post(posting)
        for lot, n in returned:
            self.move(posting, lot, n, posting.unit, now)
        self.available += posting.points
        expired = sum(n for _, n in lapsed)
        if expired:
            expiry = self.new_posting(PostingKind.EXPIRE, -expired, GROUP, now)
            expiry.related_posting_id = posting.posting_id
            expiry.reason = "expired before the points were given back"
            self.post(expiry)
            for lot, n in lapsed:
                self.move(expiry, lot, -n, GROUP, now)
                lot.status = LotStatus.EXPIRED if lot.remaining == 0 else lot.status
                self.touch(lot)
            self.available -= expired
            self.events.append(
                events.PointsExpired(self.member_id, expiry.posting_id, expired, now)
            )
        return expired

    def adjust(
        self,
        points: int,
        *,
        unit: str,
        reason: str,
        lots: list[Lot],
        programme: Programme,
        now: datetime,
    ) -> Posting:
        """A manual correction; a suspended member's points may be corrected too."""
        if self.state in (MERGED, ERASED):
            self.ensure_active()
        posting = self.new_posting(PostingKind.ADJUST, points, unit, now)
        posting.programme_version, posting.reason = programme.version, reason
        self.post(posting)
        if points > 0:
            self.credit(posting, programme.expiry_of(now))
        else:
            self.take(-points, posting, lots)
        self.events.append(
            events.PointsAdjusted(self.member_id, posting.posting_id, unit, points, now)
        )
        return posting

    def migrate(
        self,
        posting_id: str,
        points: int,
        *,
        unit: str,
        expires_at: datetime | None,
        occurred_at: datetime,
        reason: str,
        details: dict[str, Any],
        programme_version: int,
        now: datetime,
    ) -> Posting:
        """A legacy balance carried over from the unit's own programme: points the unit funds
        (its lot's issuing unit), available at once, expiring as the legacy system said. A
        suspended member keeps them too. Not earned by a purchase: no lifetime earned and no
        PointsEarned, so tiers never counts it as qualifying activity."""
        posting = Posting(
            posting_id, self.member_id, PostingKind.MIGRATION, points, unit, occurred_at, now
        )
        posting.programme_version, posting.reason = programme_version, reason
        posting.breakdown = details
        self.credit(self.post(posting), expires_at)
        return posting

    def expire(self, lots: list[Lot], as_of: datetime, now: datetime) -> tuple[int, int]:
        """The open lots due by `as_of` lapse, on one posting; answers (lots, points)."""
        due = [
            lot
            for lot in lots
            if lot.status is LotStatus.OPEN
            and lot.remaining > 0
            and lot.expires_at is not None
            and lot.expires_at <= as_of
        ]
        if not due:
            return 0, 0
        points = sum(lot.remaining for lot in due)
        posting = self.new_posting(PostingKind.EXPIRE, -points, GROUP, now)
        posting.occurred_at = as_of
        self.post(posting)
        for lot in due:
            self.move(posting, lot, -lot.remaining, GROUP, now)
            lot.remaining = 0
            lot.status = LotStatus.EXPIRED
            self.touch(lot)
        self.available -= points
        self.events.append(events.PointsExpired(self.member_id, posting.posting_id, points, as_of))
        return len(due), points

    # --- behaviour points -----------------------------------------------------------------------
    def record_activity(
        self,
        activity: RecordedActivity,
        award: Award,
        programme: Programme,
        now: datetime,
        posting_id: str = "",
    ) -> Posting | None:
        """A recorded activity's award: an ACTIVITY posting funded by the rule's unit (its lot's
        issuing unit, so the settlement counts the points as issued by it), available at once
        and expiring by the programme's rule. Not a purchase: no lifetime earned and no
        PointsEarned, so tiers never counts it. An activity that awards nothing posts nothing
        but is announced all the same (journeys and challenges follow activities)."""
        self.ensure_active()
        posting = None
        if award.points > 0:
            posting = self.new_posting(PostingKind.ACTIVITY, award.points, award.funding_unit, now)
            posting.posting_id = posting_id or posting.posting_id
            posting.occurred_at = activity.occurred_at
            posting.order_id = activity.activity_id
            posting.programme_version = programme.version
            posting.reason = f"activity {activity.activity_type} at {activity.unit}"
            self.credit(self.post(posting), programme.expiry_of(now))
        activity.settle(award, posting.posting_id if posting else "")
        self.events.append(
            events.ActivityRecorded(
                self.member_id,
                activity.unit,
                activity.activity_type,
                activity.activity_id,
                activity.occurred_at,
                dict(activity.attributes),
                activity.points,
                activity.funding_unit,
                activity.posting_id,
                activity.limit_reason,
            )
        )
        return posting

    # --- moves between members and programmes -------------------------------------------------
    # --- referrals ----------------------------------------------------------------------------
    def expect_referral(self) -> None:
        """A referral recorded: both bonuses are paid with the member's first earn."""
        self.referral_pending = True

    # --- identity's events --------------------------------------------------------------------
    def erase(self, lots: list[Lot], now: datetime) -> int:
        """An erased member can never be identified or sign in again, so their points can
        never be spent: the whole balance, available and pending, is forfeited with one
        ERASURE_FORFEIT posting, lot by lot (the settlement reports it under the units that
        issued the points). Forfeiting again forfeits nothing. Answers the points forfeited."""
        if self.state == MERGED:
            return 0  # an absorbed member's points are the survivor's
        self.state = ERASED
        forfeit = forfeit_all(lots)
        if forfeit.points:
            posting = self.new_posting(PostingKind.ERASURE_FORFEIT, -forfeit.points, GROUP, now)
            posting.reason = "member erased"
            self.post(posting)
            for lot, points in forfeit.moves:
                self.move(posting, lot, points, GROUP, now)
                self.touch(lot)
            self.available -= forfeit.available
            self.pending -= forfeit.pending
        return forfeit.points
