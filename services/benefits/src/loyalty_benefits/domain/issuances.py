"""Bulk coupon issuances: coupons of a template for every member with a tag (the identity
service's) or of a dynamic segment (the insights service's), issued chunk by chunk. The
position in the segment (the page token of the service that lists it) moves with each chunk,
so a restarted service carries on where the last committed chunk ended. Pure rules, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

DEFAULT_CHUNK = 500
MAX_CHUNK = 1000


class IssuanceState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def grant_key(issuance_id: str) -> str:
    """Each member gets one coupon of an issuance: the coupons' unique (member, grant key)."""
    return f"issuance:{issuance_id}"


@dataclass
class CouponIssuance:
    issuance_id: str
    template_code: str
    tag: str
    issuer_unit: str  # "" for an admin
    chunk_size: int
    created_at: datetime
    updated_at: datetime
    state: IssuanceState = IssuanceState.RUNNING
    page_token: str = ""  # where the next chunk starts in the segment
    chunks: int = 0
    total_members: int = 0
    processed_members: int = 0
    issued_coupons: int = 0
    done_at: datetime | None = None
    failure_reason: str = ""
    failure_message: str = ""
    segment: str = ""  # "segments/{id}" (insights); "" when `tag` names the members

    @property
    def running(self) -> bool:
        return self.state is IssuanceState.RUNNING

    @property
    def progress_percent(self) -> int:
        if self.state is IssuanceState.SUCCEEDED:
            return 100
        if not self.total_members:
            return 0
        return min(99, self.processed_members * 100 // self.total_members)

    def at_same_position(self, other: CouponIssuance) -> bool:
        """Whether `other` (read before a chunk) still stands where this one does: if not,
        another replica committed that chunk meanwhile and this attempt is dropped."""
        return self.running and (self.chunks, self.page_token) == (other.chunks, other.page_token)

    def advance(
        self, members: int, issued: int, next_page_token: str, total: int, now: datetime
    ) -> None:
        """A chunk committed: `members` handled, `issued` coupons new. `total`: the segment's
        size, as the first page counts it."""
        if self.chunks == 0:
            self.total_members = total
        self.chunks += 1
        self.processed_members += members
        self.issued_coupons += issued
        self.page_token = next_page_token
        self.total_members = max(self.total_members, self.processed_members)
        self.updated_at = now
        if not next_page_token:
            self.state = IssuanceState.SUCCEEDED
            self.done_at = now

    def fail(self, reason: str, message: str, now: datetime) -> None:
        self.state = IssuanceState.FAILED
        self.failure_reason, self.failure_message = reason, message
        self.updated_at = self.done_at = now
