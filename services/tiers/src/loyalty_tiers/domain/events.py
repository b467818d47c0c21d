"""What the tiers service tells the others, as plain domain events (no protobuf here: one
adapter, `adapters/events.py`, maps them to the `loyalty.tiers.v1` contract)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TierChanged:
    """The tier the member has changed (or a judgement kept it, or an unmerge restored it)."""

    member_id: str
    from_tier: str
    to_tier: str
    reason: str
    effective_at: datetime
    tier_year_end: datetime | None = None
    grant_ends_at: datetime | None = None  # the grant or paid membership behind the tier
