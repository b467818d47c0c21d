"""Legacy tiers of a chunk of a member import (identity's MembersImported) become status
matches, in one transaction and a handful of statements whatever the chunk's size: the
members looked up and locked together, each legacy account claimed once, the grants and the
members' rows written in bulk (see `domain/legacy.py` for how each tier is decided)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from loyalty_tiers.domain.errors import NoLadder
from loyalty_tiers.domain.grants import new_grant_id
from loyalty_tiers.domain.legacy import ImportedTiers, Outcome, decide, status_match
from loyalty_tiers.domain.member_tier import CARRIED_OVER
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


@dataclass
class MatchedTiers:
    """What a chunk did, for the log (counts and tier codes only: no personal data)."""

    granted: int = 0
    granted_before: int = 0  # legacy accounts an earlier chunk or import granted
    skipped: Counter[str] = field(default_factory=Counter)  # by outcome
    unknown_tiers: set[str] = field(default_factory=set)  # codes not on the ladder


async def grant_legacy_tiers(
    uow: AbstractUnitOfWork, chunk: ImportedTiers, now: datetime
) -> MatchedTiers:
    """A ladder must be in force (else NO_LADDER: the event is retried, then parked and
    replayed once there is one); a tier the ladder lacks is skipped, never an error."""
    result = MatchedTiers()
    entries = chunk.to_grant()
    if not entries:
        return result
    rules = await uow.tiers.ladder()
    if rules is None:
        raise NoLadder()
    members = [e.member_id for e in entries]
    survivors = await uow.tiers.survivors_of(members)
    holders = {m: survivors.get(m, m) for m in members}
    erased = await uow.tiers.erased_among(sorted(set(holders.values())))
    matches = [
        decide(
            e,
            None if holders[e.member_id] in erased else holders[e.member_id],
            rules,
            chunk.imported_at,
            now,
            new_grant_id(),
        )
        for e in entries
    ]
    fresh = await uow.tiers.claim_legacy_tiers(chunk.unit, chunk.member_import, matches, now)
    result.granted_before = len(matches) - len(fresh)
    granted = []
    for match in matches:
        if match.entry.legacy_key not in fresh:
            continue
        if match.outcome is Outcome.GRANTED:
            granted.append(match)
        else:
            result.skipped[match.outcome.value] += 1
            if match.outcome is Outcome.NOT_ON_LADDER:
                result.unknown_tiers.add(match.entry.tier)
    if not granted:
        return result
    locked = await uow.tiers.ensure_members([m.holder for m in granted], rules.tiers[0].code, now)
    for match in granted:
        locked[match.holder].grant(rules, status_match(match, chunk, now), now, CARRIED_OVER)
    await uow.tiers.save(list(locked.values()))
    result.granted = len(granted)
    return result
