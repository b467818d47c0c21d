"""Rows of the tiers tables as domain objects and back (asyncpg records, merge snapshots)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from loyalty_tiers.domain.grants import Grant, GrantKind, GrantState
from loyalty_tiers.domain.ladder import Totals
from loyalty_tiers.domain.member_tier import MemberTier

MEMBER_COLUMNS = "member_id, tier, since, tier_year_end, effective_tier"
GRANT_COLUMNS = (
    "g.member_id, g.grant_id, g.kind, g.tier, g.reason, g.starts_at, g.ends_at, g.state, g.unit, "
    "g.end_reason, g.created_at, "
    "coalesce((SELECT array_agg(o.order_id ORDER BY o.created_at, o.order_id) "
    "FROM membership_orders o WHERE o.member_id = g.member_id AND o.grant_id = g.grant_id), "
    "'{}') AS order_ids"
)


def member_of(row: asyncpg.Record) -> MemberTier:
    return MemberTier(
        str(row["member_id"]),
        row["tier"],
        row["since"],
        row["tier_year_end"],
        row["effective_tier"],
    )


def grant_of(row: asyncpg.Record) -> Grant:
    return Grant(
        member_id=str(row["member_id"]),
        grant_id=str(row["grant_id"]),
        kind=GrantKind(row["kind"]),
        tier=row["tier"],
        reason=row["reason"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        state=GrantState(row["state"]),
        unit=row["unit"],
        order_ids=list(row["order_ids"]),
        end_reason=row["end_reason"],
    )


def snapshot(member: MemberTier | None) -> str | None:
    if member is None:
        return None
    return json.dumps(
        {
            "tier": member.tier,
            "since": member.since.isoformat(),
            "tier_year_end": member.tier_year_end.isoformat() if member.tier_year_end else None,
            "effective": member.effective,
        }
    )


def from_snapshot(member_id: str, stored: Any) -> MemberTier | None:
    if stored is None:
        return None
    data = json.loads(stored) if isinstance(stored, str) else stored
    year_end = data["tier_year_end"]
    return MemberTier(
        member_id,
        data["tier"],
        datetime.fromisoformat(data["since"]),
        datetime.fromisoformat(year_end) if year_end else None,
        data["effective"],
    )


def totals_of(rows: Iterable[asyncpg.Record]) -> dict[str, dict[str, Totals]]:
    found: dict[str, dict[str, Totals]] = {}
    for r in rows:
        found.setdefault(str(r["member_id"]), {})[r["unit"]] = Totals(
            r["spend"], int(r["points"]), int(r["visits"])
        )
    return found
