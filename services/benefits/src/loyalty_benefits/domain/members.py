"""Members who are not active, as identity's events tell it: suspended (until reactivated),
merged into another member, or erased. Such members neither consume benefits, redeem coupons
or rewards nor are issued coupons; what they hold can still be read and given back. Pure
rules, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from loyalty_benefits.domain.errors import MemberNotActive


class MemberState(StrEnum):
    SUSPENDED = "suspended"
    MERGED = "merged"
    ERASED = "erased"


FINAL = (MemberState.MERGED, MemberState.ERASED)


@dataclass(frozen=True)
class InactiveMember:
    member_id: str
    state: MemberState
    merged_into: str  # the survivor when merged, else ""
    updated_at: datetime

    def refusal(self) -> MemberNotActive:
        return MemberNotActive(self.member_id, self.state.value, self.merged_into)


def ensure_active(known: InactiveMember | None) -> None:
    """MemberNotActive (FAILED_PRECONDITION, MEMBER_SUSPENDED / _MERGED / _ERASED) unless the
    member is active (no state known)."""
    if known is not None:
        raise known.refusal()


def ensure_not_merged(known: InactiveMember | None) -> None:
    """Reads answer for suspended and erased members, but an absorbed member's id is refused
    (MEMBER_MERGED naming the survivor), on reads as on writes, as every service does."""
    if known is not None and known.state is MemberState.MERGED:
        raise known.refusal()


def suspended(member_id: str, known: InactiveMember | None, now: datetime) -> InactiveMember:
    """Suspended already, merged or erased: stays so (a redelivered or late suspension changes
    nothing; merged and erased are final)."""
    if known is not None:
        return known
    return InactiveMember(member_id, MemberState.SUSPENDED, "", now)


def reactivated(known: InactiveMember | None) -> InactiveMember | None:
    """Active again (no state) unless merged or erased, which are final."""
    if known is not None and known.state in FINAL:
        return known
    return None


def merged(
    member_id: str, survivor_id: str, known: InactiveMember | None, now: datetime
) -> InactiveMember:
    """The absorbed member now points at the survivor; an erased member stays erased."""
    if known is not None and known.state is MemberState.ERASED:
        return known
    if known is not None and (known.state, known.merged_into) == (MemberState.MERGED, survivor_id):
        return known
    return InactiveMember(member_id, MemberState.MERGED, survivor_id, now)


def erased(member_id: str, known: InactiveMember | None, now: datetime) -> InactiveMember:
    if known is not None and known.state is MemberState.ERASED:
        return known
    return InactiveMember(member_id, MemberState.ERASED, "", now)


def restored_by_unmerge(known: InactiveMember | None, survivor_id: str) -> bool:
    """Whether undoing a merge into `survivor_id` makes the member active again (no state):
    only a member merged into that survivor (a redelivery, or one erased since, stays)."""
    return known is not None and (known.state, known.merged_into) == (
        MemberState.MERGED,
        survivor_id,
    )
