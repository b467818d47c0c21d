"""The ledger's entities: postings (immutable entries), lots (points of one earning, spent
soonest-expiring first) and how points are taken from lots, never below zero."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from loyalty_kit.errors import FailedPrecondition


class PostingKind(Enum):
    EARN = "earn"
    REDEEM = "redeem"
    REVERSE = "reverse"
    REDEMPTION_CANCEL = "redemption_cancel"
    ADJUST = "adjust"
    EXPIRE = "expire"
    MERGE_IN = "merge_in"
    MERGE_OUT = "merge_out"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    PARTNER_EXCHANGE_OUT = "partner_exchange_out"
    PARTNER_EXCHANGE_IN = "partner_exchange_in"
    PARTNER_EXCHANGE_REVERSE = "partner_exchange_reverse"
    REFERRAL_BONUS = "referral_bonus"
    ERASURE_FORFEIT = "erasure_forfeit"
    UNMERGE_OUT = "unmerge_out"
    UNMERGE_IN = "unmerge_in"
    MIGRATION = "migration"
    ACTIVITY = "activity"


# How each kind counts in inter-unit settlement: points issued (a unit's liability, including a
# legacy balance the unit carried over when its members were imported), points redeemed (value
# a unit delivered), or neither (moves between members; expiry and erasure forfeits, which are
# attributed by lot to the units that issued the points).
ISSUING = frozenset(
    {
        PostingKind.EARN,
        PostingKind.REVERSE,
        PostingKind.ADJUST,
        PostingKind.PARTNER_EXCHANGE_IN,
        PostingKind.REFERRAL_BONUS,
        PostingKind.MIGRATION,
        PostingKind.ACTIVITY,
    }
)
REDEEMING = frozenset(
    {PostingKind.REDEEM, PostingKind.REDEMPTION_CANCEL, PostingKind.PARTNER_EXCHANGE_OUT}
)


class LotStatus(Enum):
    PENDING = "pending"
    OPEN = "open"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


_FAR_FUTURE = datetime.max.replace(tzinfo=None)
# Where lots that never expire sort among the others (a page token carries it like a date).
NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

GROUP = "group"  # the unit of postings that belong to no unit (expiry, merges, erasure)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Posting:
    """One entry of a member's ledger; never changed once written (but for `pending`, which
    turns false when the points become available)."""

    posting_id: str
    member_id: str
    kind: PostingKind
    points: int
    unit: str
    occurred_at: datetime
    posted_at: datetime
    channel: str = "CHANNEL_UNSPECIFIED"
    order_id: str = ""
    pending: bool = False
    available_at: datetime | None = None
    programme_version: int | None = None
    breakdown: dict[str, Any] | None = None
    related_posting_id: str | None = None
    reason: str = ""
    unrecovered_points: int = 0
    seq: int = 0


@dataclass
class Lot:
    lot_id: str
    earned_unit: str
    remaining: int
    earned_at: datetime
    expires_at: datetime | None
    status: LotStatus = LotStatus.OPEN
    # The posting that created the lot's points and, while pending, when they become available.
    posting_id: str = ""
    available_at: datetime | None = None

    def spend_order(self) -> tuple[datetime, datetime, str]:
        """Soonest expiry first (points that never expire last), then oldest."""
        expires = self.expires_at.replace(tzinfo=None) if self.expires_at else _FAR_FUTURE
        return (expires, self.earned_at.replace(tzinfo=None), self.lot_id)


@dataclass(frozen=True)
class LotRecord:
    """A lot as a member's statement shows it: the lot and the points it was created with."""

    member_id: str
    lot: Lot
    points: int


class InsufficientPoints(FailedPrecondition):
    reason = "INSUFFICIENT_POINTS"

    def __init__(self, member_id: str, wanted: int, available: int) -> None:
        super().__init__(
            f"the member has {available} points available; {wanted} were asked",
            metadata={
                "member_id": member_id,
                "requested": str(wanted),
                "available": str(available),
            },
        )


def take_soonest_expiring_first(
    lots: list[Lot], points: int, member_id: str, *, first: str | None = None
) -> list[tuple[Lot, int]]:
    """Which lots give how many points (open lots only): soonest expiry first, then oldest (see
    `Lot.spend_order`); `first` names a lot to take from before the others (a reversal takes
    from the earn's own lot first)."""
    usable = sorted(
        (lot for lot in lots if lot.status is LotStatus.OPEN and lot.remaining > 0),
        key=lambda lot: (lot.lot_id != first, lot.spend_order()),
    )
    available = sum(lot.remaining for lot in usable)
    if points > available:
        raise InsufficientPoints(member_id, points, available)
    taken: list[tuple[Lot, int]] = []
    left = points
    for lot in usable:
        if left == 0:
            break
        take = min(lot.remaining, left)
        taken.append((lot, take))
        left -= take
    return taken


@dataclass
class Move:
    """Points a lot gave (negative) or got back (positive) for a posting."""

    posting_id: str
    lot: Lot
    points: int
    unit: str
    at: datetime


@dataclass
class EarnEntry:
    """An earn's posting with its new lot (saved in one statement: the hot path)."""

    posting: Posting
    lot: Lot


@dataclass
class Changes:
    """What the repository writes when the account is saved, in this order."""

    earn: EarnEntry | None = None
    postings: list[Posting] = field(default_factory=list)
    new_lots: list[tuple[Lot, int]] = field(default_factory=list)  # (lot, points it was given)
    lots: dict[str, Lot] = field(default_factory=dict)  # lots whose remaining or status changed
    moves: list[Move] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)  # postings no longer pending
    absorbed: list[str] = field(default_factory=list)  # members whose lots and orders come here
    # Lots taken over from a member at a merge that go back to it (origin, lot ids, old->new).
    given_back: list[tuple[str, list[str], dict[str, str]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(vars(self).values())


@dataclass(frozen=True)
class Forfeit:
    """What an erased member's lots gave up: each lot's points (the moves), of which how many
    were available and how many still pending."""

    moves: list[tuple[Lot, int]]
    available: int
    pending: int

    @property
    def points(self) -> int:
        return self.available + self.pending


def forfeit_all(lots: list[Lot]) -> Forfeit:
    """Every point left in the lots goes, lot by lot (an erased member can never spend them):
    open lots are emptied, pending lots are cancelled so they never activate. Expired and
    cancelled lots hold nothing and are left alone, so forfeiting twice forfeits nothing."""
    moves: list[tuple[Lot, int]] = []
    available = pending = 0
    for lot in sorted(lots, key=Lot.spend_order):
        if lot.remaining <= 0 or lot.status not in (LotStatus.OPEN, LotStatus.PENDING):
            continue
        moves.append((lot, -lot.remaining))
        if lot.status is LotStatus.PENDING:
            pending += lot.remaining
            lot.status = LotStatus.CANCELLED
        else:
            available += lot.remaining
        lot.remaining = 0
    return Forfeit(moves, available, pending)
