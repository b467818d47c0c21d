"""Carrying over the legacy balances of a chunk of a member import (identity's
MembersImported), in one transaction and a handful of statements whatever the chunk's size:
the accounts locked together, each legacy account claimed once, every posting, lot and
movement written in bulk (see `domain/migration.py` for how each balance is decided)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from loyalty_points.domain.account import Account
from loyalty_points.domain.events import MigratedBalance, PointsMigrated
from loyalty_points.domain.migration import (
    Carry,
    ImportedChunk,
    Outcome,
    decide,
    legacy_rate,
    posting_details,
)
from loyalty_points.domain.programme import Programme
from loyalty_points.service_layer.accounts import lock_holders
from loyalty_points.service_layer.ports import PointsWork


@dataclass
class CarriedOver:
    """What a chunk did, for the log (counts only: no personal data)."""

    credited: int = 0
    points: int = 0
    carried_before: int = 0  # legacy accounts an earlier chunk or import carried over
    skipped: Counter[str] = field(default_factory=Counter)  # by outcome: below_rate, expired...


async def carry_over(uow: PointsWork, chunk: ImportedChunk, now: datetime) -> CarriedOver:
    result = CarriedOver()
    balances = chunk.to_carry()
    if not balances:
        return result
    programme = await uow.ledger.programme_at(chunk.imported_at)
    rate = legacy_rate(programme, chunk.unit, chunk.imported_at)
    assert programme is not None
    holders = await lock_holders(uow.ledger, [b.member_id for b in balances], now)
    carries = [
        decide(b, holders[b.member_id], rate, programme, chunk.imported_at, now) for b in balances
    ]
    fresh = await uow.ledger.claim_legacy_balances(chunk.unit, chunk.member_import, carries, now)
    result.carried_before = len(carries) - len(fresh)
    migrated: list[MigratedBalance] = []
    changed: dict[str, Account] = {}
    for carry in carries:
        if carry.balance.legacy_key not in fresh:
            continue
        if carry.outcome is not Outcome.CREDITED:
            result.skipped[carry.outcome.value] += 1
            continue
        migrated.append(_credit(holders[carry.balance.member_id], carry, chunk, programme, now))
        changed[carry.holder] = holders[carry.balance.member_id]
        result.credited += 1
        result.points += carry.points
    await uow.ledger.save_many(list(changed.values()), now)
    if migrated:
        uow.record(PointsMigrated(chunk.member_import, chunk.unit, str(rate), tuple(migrated), now))
    return result


def _credit(
    account: Account, carry: Carry, chunk: ImportedChunk, programme: Programme, now: datetime
) -> MigratedBalance:
    assert carry.posting_id is not None
    rate = programme.units[chunk.unit].legacy_rate
    reason, details = posting_details(chunk, carry.balance, rate)
    account.migrate(
        carry.posting_id,
        carry.points,
        unit=chunk.unit,
        expires_at=carry.expires_at,
        occurred_at=chunk.imported_at,
        reason=reason,
        details=details,
        programme_version=programme.version,
        now=now,
    )
    balance = carry.balance
    return MigratedBalance(
        account.member_id, carry.posting_id, balance.legacy_points, carry.points, carry.expires_at
    )
