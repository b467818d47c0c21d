"""Legacy tiers carried over when a unit's existing members are imported (identity's
MembersImported, one chunk at a time): each mapped legacy tier becomes a status match of that
ladder tier until the end the import gave (Huayue: the end of the next calendar year). Pure.

A tier code the ladder does not have grants nothing: it is skipped and counted, never an
error (the import mapped it; the ladder decides); nor does its entry tier, which every member
has. One legacy account (unit,
legacy key) is granted once, whichever file or import brings it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from zoneinfo import ZoneInfo

from loyalty_tiers.domain.grants import Grant, GrantKind
from loyalty_tiers.domain.ladder import Ladder


@dataclass(frozen=True)
class LegacyTier:
    """One imported member's mapped legacy tier, as identity sent it."""

    member_id: str
    legacy_key: str  # opaque and stable per legacy account within its unit
    tier: str
    ends_at: datetime | None  # None: the end of the next calendar year after the import


@dataclass(frozen=True)
class ImportedTiers:
    """The legacy tiers of one committed chunk of an import."""

    member_import: str
    unit: str
    imported_at: datetime
    tiers: tuple[LegacyTier, ...]

    def to_grant(self) -> list[LegacyTier]:
        """The entries that carry a tier, each legacy account once (the first)."""
        seen: dict[str, LegacyTier] = {}
        for entry in self.tiers:
            if entry.tier and entry.legacy_key:
                seen.setdefault(entry.legacy_key, entry)
        return list(seen.values())


class Outcome(Enum):
    GRANTED = "granted"
    NOT_ON_LADDER = "not_on_ladder"  # no such tier on the ladder
    ENTRY_TIER = "entry_tier"  # the ladder's entry tier: every member has it, nothing to match
    ENDED = "ended"  # the status match would have ended already
    NO_MEMBER = "no_member"  # the member was erased meanwhile


@dataclass(frozen=True)
class Match:
    """What becomes of one legacy tier (the record the store keeps, once per account)."""

    entry: LegacyTier
    holder: str  # the member granted: the one imported, or the survivor it was merged into
    outcome: Outcome
    ends_at: datetime
    grant_id: str | None  # the status match, when granted


def end_of_next_year(at: datetime, zone: str) -> datetime:
    """The end of the calendar year after `at`'s, in the ladder's time zone."""
    return datetime(at.astimezone(ZoneInfo(zone)).year + 2, 1, 1, tzinfo=ZoneInfo(zone))


def decide(
    entry: LegacyTier,
    holder: str | None,
    ladder: Ladder,
    imported_at: datetime,
    now: datetime,
    new_id: str,
) -> Match:
    ends_at = entry.ends_at or end_of_next_year(imported_at, ladder.time_zone)
    if holder is None:
        outcome = Outcome.NO_MEMBER
    elif entry.tier == ladder.tiers[0].code:
        outcome = Outcome.ENTRY_TIER
    elif not ladder.has_tier_above_entry(entry.tier):
        outcome = Outcome.NOT_ON_LADDER
    elif ends_at <= now:
        outcome = Outcome.ENDED
    else:
        outcome = Outcome.GRANTED
    granted = outcome is Outcome.GRANTED
    return Match(entry, holder or entry.member_id, outcome, ends_at, new_id if granted else None)


def status_match(match: Match, chunk: ImportedTiers, now: datetime) -> Grant:
    """The grant a granted match gives: a status match from the unit's own programme."""
    assert match.grant_id is not None
    grant = Grant(
        match.holder,
        match.grant_id,
        GrantKind.STATUS_MATCH,
        match.entry.tier,
        f"status match of the legacy tier at {chunk.unit} ({chunk.member_import})",
        now,
        match.ends_at,
    )
    grant.unit = chunk.unit
    return grant
