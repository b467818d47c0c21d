"""What happened in the points service, in the domain's words: plain records the aggregates
append and the unit of work hands to the outbox (adapters/events.py maps each to the protobuf
contract, `loyalty.points.v1`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from loyalty_points.domain.ledger import Changes, PostingKind
from loyalty_points.domain.money import Amount


@dataclass(frozen=True)
class ProgrammePublished:
    version: int
    units: tuple[str, ...]
    effective_from: datetime
    base_currency_code: str
    point_value: str  # of one point in the base currency, a decimal


@dataclass(frozen=True)
class PointsEarned:
    member_id: str
    posting_id: str
    unit: str
    order_id: str
    spend: Amount  # qualifying spend, in the order's currency
    base_spend: Amount  # the same in the programme's base currency (what tiers counts)
    points: int
    pending: bool
    occurred_at: datetime


@dataclass(frozen=True)
class PointsReversed:
    member_id: str
    posting_id: str
    earn_posting_id: str
    unit: str
    order_id: str
    base_spend: Amount
    points: int
    occurred_at: datetime


@dataclass(frozen=True)
class PointsRedeemed:
    member_id: str
    posting_id: str
    unit: str
    points: int
    occurred_at: datetime


@dataclass(frozen=True)
class RedemptionCancelled:
    member_id: str
    posting_id: str
    redemption_posting_id: str
    points: int
    occurred_at: datetime


@dataclass(frozen=True)
class PointsExpired:
    member_id: str
    posting_id: str
    points: int
    occurred_at: datetime


@dataclass(frozen=True)
class PendingPointsActivated:
    member_id: str
    posting_id: str
    points: int
    activated_at: datetime


@dataclass(frozen=True)
class PointsAdjusted:
    member_id: str
    posting_id: str
    unit: str
    points: int
    occurred_at: datetime


@dataclass(frozen=True)
class PointsTransferred:
    from_member_id: str
    to_member_id: str
    posting_id: str
    points: int
    occurred_at: datetime


@dataclass(frozen=True)
class PartnerExchanged:
    member_id: str
    posting_id: str
    partner: str
    points: int  # negative: out to the partner
    partner_units: int
    occurred_at: datetime


@dataclass(frozen=True)
class ReferralRewarded:
    referrer_member_id: str
    referee_member_id: str
    referrer_points: int
    referee_points: int
    occurred_at: datetime


@dataclass(frozen=True)
class ActivityRecorded:
    """A member's activity recorded, with what it awarded (0 points: no rule, or a limit)."""

    member_id: str
    unit: str
    activity_type: str
    activity_id: str
    occurred_at: datetime
    attributes: dict[str, str]
    points: int
    funding_unit: str
    posting_id: str
    limit_reason: str


@dataclass(frozen=True)
class MigratedBalance:
    member_id: str
    posting_id: str
    legacy_points: int
    points: int
    expires_at: datetime | None


@dataclass(frozen=True)
class PointsMigrated:
    """A chunk of an import's legacy balances carried over (one event per chunk, as identity
    publishes them)."""

    member_import: str
    unit: str
    legacy_points_per_point: str
    balances: tuple[MigratedBalance, ...]
    occurred_at: datetime


@dataclass(frozen=True)
class LedgerPosting:
    posting_id: str
    kind: PostingKind
    unit: str
    points: int
    posted_at: datetime
    occurred_at: datetime


@dataclass(frozen=True)
class LotMovement:
    posting_id: str
    lot_id: str
    earned_unit: str
    unit: str
    points: int
    posted_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class LedgerPosted:
    """What one save of an account writes to the ledger: its postings and lot movements, as
    the settlement sums them (the read side mirrors the settlement from it)."""

    member_id: str
    postings: tuple[LedgerPosting, ...]
    movements: tuple[LotMovement, ...]

    @classmethod
    def of(cls, member_id: str, changes: Changes) -> LedgerPosted | None:
        """The event of an account's changes about to be saved; None when they post nothing."""
        postings = list(changes.postings)
        movements = [
            LotMovement(
                m.posting_id,
                m.lot.lot_id,
                m.lot.earned_unit,
                m.unit,
                m.points,
                m.at,
                m.lot.expires_at,
            )
            for m in changes.moves
        ]
        if (earn := changes.earn) is not None:
            postings.insert(0, earn.posting)
            if earn.posting.points > 0:  # as the earn's statement writes its lot's movement
                lot = earn.lot
                movements.insert(
                    0,
                    LotMovement(
                        earn.posting.posting_id,
                        lot.lot_id,
                        earn.posting.unit,
                        earn.posting.unit,
                        earn.posting.points,
                        earn.posting.posted_at,
                        lot.expires_at,
                    ),
                )
        if not postings and not movements:
            return None
        return cls(
            member_id,
            tuple(
                LedgerPosting(p.posting_id, p.kind, p.unit, p.points, p.posted_at, p.occurred_at)
                for p in postings
            ),
            tuple(movements),
        )


def ledger_as_posted(
    member_id: str,
    postings: Sequence[LedgerPosting],
    movements: Sequence[LotMovement],
    postings_per_event: int = 500,
) -> list[LedgerPosted]:
    """A member's ledger as it stands, published again: events of at most `postings_per_event`
    postings (an event stays well under the bus's message limit however long the ledger), each
    posting's lot movements in the event with it, the postings in the order given. Movements of
    a posting not given (none in a consistent ledger) go with the last event."""
    if not postings and not movements:
        return []
    parts = [
        list(postings[i : i + postings_per_event])
        for i in range(0, len(postings), postings_per_event)
    ] or [[]]
    part_of = {p.posting_id: n for n, part in enumerate(parts) for p in part}
    moved: list[list[LotMovement]] = [[] for _ in parts]
    for m in movements:
        moved[part_of.get(m.posting_id, len(parts) - 1)].append(m)
    return [
        LedgerPosted(member_id, tuple(part), tuple(moves))
        for part, moves in zip(parts, moved, strict=True)
    ]


Event = (
    ProgrammePublished
    | PointsEarned
    | PointsReversed
    | PointsRedeemed
    | RedemptionCancelled
    | PointsExpired
    | PendingPointsActivated
    | PointsAdjusted
    | PointsTransferred
    | PartnerExchanged
    | ReferralRewarded
    | ActivityRecorded
    | PointsMigrated
    | LedgerPosted
)
