"""Tiers held by grant rather than by activity (pure): a status match from a partner
programme, a gift, a paid membership (会员订阅). A grant lifts the member to its tier until it
ends; then the member falls back to the tier the activity holds. Grants never lower a tier."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from loyalty_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, Violations
from loyalty_kit.timestamps import add_months
from loyalty_kit.validation import length_violation

from loyalty_tiers.domain.ladder import Ladder

MAX_MEMBERSHIP_MONTHS = 36
MAX_REASON = 500


class GrantKind(Enum):
    STATUS_MATCH = "status_match"
    GIFT = "gift"
    PAID_MEMBERSHIP = "paid_membership"


class GrantState(Enum):
    ACTIVE = "active"
    ENDED = "ended"
    REVOKED = "revoked"


@dataclass
class Grant:
    member_id: str
    grant_id: str
    kind: GrantKind
    tier: str
    reason: str
    starts_at: datetime
    ends_at: datetime
    state: GrantState = GrantState.ACTIVE
    unit: str = ""
    order_ids: list[str] = field(default_factory=list)
    end_reason: str = ""

    @classmethod
    def given(
        cls, member_id: str, kind: GrantKind, tier: str, reason: str, at: datetime, ends: datetime
    ) -> Grant:
        """A new grant (status match or gift) in force from `at`."""
        return cls(member_id, new_grant_id(), kind, tier, reason.strip(), at, ends)

    @classmethod
    def paid_membership(
        cls, member_id: str, unit: str, tier: str, months: int, at: datetime
    ) -> Grant:
        reason = f"paid membership bought at {unit}"
        return cls(
            member_id,
            new_grant_id(),
            GrantKind.PAID_MEMBERSHIP,
            tier,
            reason,
            at,
            add_months(at, months),
            unit=unit,
        )

    def in_force(self, at: datetime) -> bool:
        return self.state is GrantState.ACTIVE and self.starts_at <= at < self.ends_at

    def is_membership_of(self, unit: str, tier: str) -> bool:
        return self.kind is GrantKind.PAID_MEMBERSHIP and self.unit == unit and self.tier == tier

    def renew(self, months: int, at: datetime) -> None:
        """A renewal adds the period to the end (or to now, if it had lapsed)."""
        self.ends_at = add_months(max(self.ends_at, at), months)

    def stop(self, state: GrantState, at: datetime, why: str = "") -> None:
        self.state = state
        self.ends_at = min(self.ends_at, at)
        self.end_reason = why


def new_grant_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class MembershipOrder:
    """An order that bought one period of a paid membership (each order buys once)."""

    unit: str
    order_id: str
    member_id: str
    grant_id: str
    months: int


class GrantNotActive(FailedPrecondition):
    reason = "GRANT_NOT_ACTIVE"

    def __init__(self, grant: Grant) -> None:
        super().__init__(
            f"the grant has {grant.state.value}", metadata={"state": grant.state.value}
        )


def holding_grant(
    ladder: Ladder, earned: str, grants: Iterable[Grant], at: datetime
) -> Grant | None:
    """The grant that lifts the member highest above the earned tier, if any does."""
    best: Grant | None = None
    level = ladder.index_of(earned)
    for grant in grants:
        if grant.in_force(at) and ladder.index_of(grant.tier) > level:
            best, level = grant, ladder.index_of(grant.tier)
    return best


def check_grant(
    ladder: Ladder, tier: str, reason: str, ends_at: datetime | None, now: datetime, where: str
) -> None:
    problems = Violations()
    if not ladder.has_tier_above_entry(tier):
        codes = ", ".join(t.code for t in ladder.tiers[1:])
        problems.add(f"{where}.tier", f"a tier of the ladder above the entry tier: {codes}")
    if not reason.strip() or len(reason) > MAX_REASON:
        problems.add(f"{where}.reason", f"required, at most {MAX_REASON} characters")
    if ends_at is None:
        problems.add(f"{where}.end_time", "required")
    elif ends_at <= now:
        problems.add(f"{where}.end_time", "must be in the future")
    problems.raise_if_any()


def check_membership(ladder: Ladder, tier: str, order_id: str, months: int) -> None:
    problems = Violations()
    if not ladder.has_tier_above_entry(tier):
        codes = ", ".join(t.code for t in ladder.tiers[1:])
        problems.add("tier", f"a tier of the ladder above the entry tier: {codes}")
    if too_long := length_violation(order_id, "order_id"):
        problems.items.append(too_long)
    if not 1 <= months <= MAX_MEMBERSHIP_MONTHS:
        problems.add("months", f"1 to {MAX_MEMBERSHIP_MONTHS}")
    problems.raise_if_any()


def unit_required(unit: str) -> str:
    if not unit:
        raise InvalidArgument.of(
            [FieldViolation("x-loyalty-unit", "the selling unit: call as a business unit")]
        )
    return unit
