"""A reward redemption is a small saga across two services: stock reserved here, points debited
by the points service, the reward issued here as a coupon. Its state says which steps are done,
so a retry (or the recovery job) carries on from there and a failure undoes exactly what was
done."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RedemptionState(StrEnum):
    RESERVED = "reserved"  # one unit of stock taken; points not (known to be) debited
    CHARGED = "charged"  # points debited (posting known); the coupon not issued yet
    COMPLETED = "completed"  # coupon issued
    FAILED = "failed"  # undone: stock back, points (if debited) given back


@dataclass
class Redemption:
    redemption_id: str
    scope: str
    request_id: str
    fingerprint: str
    member_id: str
    reward_code: str
    unit: str
    points: int
    state: RedemptionState
    created_at: datetime
    posting_id: str = ""
    coupon_code: str = ""
    failure_reason: str = ""
    failure_message: str = ""

    @property
    def points_request_id(self) -> str:
        """The request_id of the debit at the points service, derived from the redemption: every
        attempt sends the same one, so the points service debits once whatever happens."""
        return f"benefits.reward.{self.redemption_id}"

    @property
    def cancel_request_id(self) -> str:
        return f"benefits.reward-cancel.{self.redemption_id}"

    @property
    def order_id(self) -> str:
        return f"reward:{self.redemption_id}"
