"""Legacy balances carried over when a unit's existing members are imported (identity's
MembersImported, one chunk of an import at a time), and how each is decided. Pure: no I/O.

A balance in the unit's legacy points converts at the unit's rate in the programme in force
when the chunk was imported (`UnitRule.legacy_points_per_point`: the mall's card points 10:1),
rounded down; it is funded by that unit (its lot's issuing unit), available at once, and
expires when the legacy system said, or else by the programme's rule from the import. One
legacy account (unit, legacy key) is carried over once, whichever file or import brings it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from loyalty_kit.errors import FailedPrecondition

from loyalty_points.domain.account import ERASED, MERGED, Account
from loyalty_points.domain.ledger import new_id
from loyalty_points.domain.programme import Programme


@dataclass(frozen=True)
class LegacyBalance:
    """One imported member's legacy balance, as identity sent it."""

    member_id: str
    legacy_key: str  # opaque and stable per legacy account within its unit
    legacy_points: int
    expires_at: datetime | None  # None: the programme's expiry rule, from the import


@dataclass(frozen=True)
class ImportedChunk:
    """The legacy balances of one committed chunk of an import."""

    member_import: str
    unit: str
    imported_at: datetime
    balances: tuple[LegacyBalance, ...]

    def to_carry(self) -> list[LegacyBalance]:
        """The balances worth a look: positive, each legacy account once (the first)."""
        seen: dict[str, LegacyBalance] = {}
        for balance in self.balances:
            if balance.legacy_points > 0 and balance.legacy_key:
                seen.setdefault(balance.legacy_key, balance)
        return list(seen.values())


class Outcome(Enum):
    CREDITED = "credited"
    BELOW_RATE = "below_rate"  # fewer legacy points than one group point: nothing to credit
    EXPIRED = "expired"  # the balance's expiry had passed: it would lapse at once
    NO_MEMBER = "no_member"  # the member was erased meanwhile: nobody to credit


@dataclass(frozen=True)
class Carry:
    """What becomes of one legacy balance (the claim the ledger keeps, once per account)."""

    balance: LegacyBalance
    holder: str  # the account credited: the member, or the survivor it was merged into
    outcome: Outcome
    points: int
    expires_at: datetime | None
    posting_id: str | None  # the MIGRATION posting, when credited


class UnitNotInProgramme(FailedPrecondition):
    """No rate to convert at: the programme in force at the import does not name the unit.
    The event is retried and then parked; replayed once the programme names the unit, the
    balances are carried over then."""

    reason = "UNIT_NOT_IN_PROGRAMME"

    def __init__(self, unit: str, at: datetime) -> None:
        super().__init__(
            f"the programme in force at {at.isoformat()} has no unit {unit!r}",
            metadata={"unit": unit},
        )


def legacy_rate(programme: Programme | None, unit: str, at: datetime) -> Decimal:
    if programme is None or unit not in programme.units:
        raise UnitNotInProgramme(unit, at)
    return programme.units[unit].legacy_rate


def converted(legacy_points: int, rate: Decimal) -> int:
    """Group points for a legacy balance: divided by the rate, rounded down (exactly, in
    integers: a decimal division could round 9.999... up to 10)."""
    numerator, denominator = rate.as_integer_ratio()
    return legacy_points * denominator // numerator


def decide(
    balance: LegacyBalance,
    holder: Account,
    rate: Decimal,
    programme: Programme,
    imported_at: datetime,
    now: datetime,
) -> Carry:
    points = converted(balance.legacy_points, rate)
    expires_at = balance.expires_at or programme.expiry_of(imported_at)
    if holder.state in (ERASED, MERGED):  # merged: a survivor out of reach (see carry_over)
        outcome = Outcome.NO_MEMBER
    elif points <= 0:
        outcome = Outcome.BELOW_RATE
    elif expires_at is not None and expires_at <= now:
        outcome = Outcome.EXPIRED
    else:
        outcome = Outcome.CREDITED
    credited = outcome is Outcome.CREDITED
    return Carry(
        balance,
        holder.member_id,
        outcome,
        points if credited else 0,
        expires_at,
        new_id() if credited else None,
    )


def posting_details(
    chunk: ImportedChunk, balance: LegacyBalance, rate: Decimal
) -> tuple[str, dict[str, Any]]:
    """The MIGRATION posting's reason and the details it keeps (in its breakdown column)."""
    reason = (
        f"legacy balance of {balance.legacy_points} {chunk.unit} points at {rate} per point"
        f" ({chunk.member_import})"
    )
    return reason, {
        "member_import": chunk.member_import,
        "legacy_points": balance.legacy_points,
        "legacy_points_per_point": str(rate),
    }
