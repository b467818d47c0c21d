"""What members and the group see: a member's tier and progress, a dry run, history, grants,
the distribution. Nothing here writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from loyalty_tiers.domain.grants import Grant, holding_grant
from loyalty_tiers.domain.ladder import Ladder, Progress, Totals
from loyalty_tiers.domain.member_tier import HistoryEntry, MemberTier
from loyalty_tiers.service_layer.activity import window_activity
from loyalty_tiers.service_layer.ladders import ladder
from loyalty_tiers.service_layer.members import member_as_it_stands, refuse_if_merged
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


@dataclass
class TierView:
    member: MemberTier
    tier: str
    holder: Grant | None
    next_tier: str
    progress: Progress
    retention: Progress
    currency: str  # the ladder's base currency, of spend and growth


async def member_view(uow: AbstractUnitOfWork, member_id: str, now: datetime) -> TierView:
    rules = await ladder(uow)
    member = await member_as_it_stands(uow, rules, member_id, now)
    holder = holding_grant(rules, member.tier, member.grants, now)
    tier = holder.tier if holder else member.tier
    window = await window_activity(uow, rules, member, now)
    next_tier, progress = rules.progress(rules.index_of(tier), window)
    retention: Progress = []
    if member.tier_year_end is not None:
        start, _ = member.tier_year(rules)
        year = rules.activity(await uow.tiers.activity(member_id, start, now))
        retention = rules.retention_progress(rules.index_of(member.tier), year)
    return TierView(member, tier, holder, next_tier, progress, retention, rules.base_currency)


@dataclass
class Preview:
    tier: str
    upgrade: bool
    next_tier: str
    progress: Progress
    currency: str  # the ladder's base currency, of spend and growth


# Activity a dry run adds: (unit, totals, the posting that records it, when: None for now).
ExtraActivity = tuple[str, Totals, str, datetime | None]


async def preview(
    uow: AbstractUnitOfWork,
    member_id: str,
    extra: Sequence[ExtraActivity],
    now: datetime,
) -> Preview:
    """The tier the member would have with this extra activity now (nothing is stored).
    Activity of a posting already counted is not added twice, and activity outside the window
    counts for nothing, as when it arrives."""
    rules = await ladder(uow)
    spends = [totals.spend for _, totals, _, _ in extra]
    rules.check_spend(spends, "activities[{}].qualifying_spend")
    counted = await uow.tiers.counted(member_id, [p for _, _, p, _ in extra if p])
    member = await member_as_it_stands(uow, rules, member_id, now)
    holder = holding_grant(rules, member.tier, member.grants, now)
    tier = holder.tier if holder else member.tier
    since = member.window_start(rules, now)
    added = [
        (unit, totals)
        for unit, totals, posting, when in extra
        if posting not in counted and (when is None or since <= when <= now)
    ]
    window = rules.activity(await uow.tiers.activity(member_id, since, now), *added)
    would = max(rules.supported(window), rules.index_of(tier))
    next_tier, progress = rules.progress(would, window)
    upgrade = would > rules.index_of(tier)
    return Preview(rules.tiers[would].code, upgrade, next_tier, progress, rules.base_currency)


async def distribution(uow: AbstractUnitOfWork) -> tuple[Ladder, list[tuple[str, int]]]:
    rules = await ladder(uow)
    counts = await uow.tiers.distribution()
    return rules, [(t.code, counts.get(t.code, 0)) for t in rules.tiers]


async def history(
    uow: AbstractUnitOfWork, member_id: str, before_seq: int | None, limit: int
) -> list[tuple[int, HistoryEntry]]:
    """A page of the member's tier changes, newest first, with each one's position."""
    await refuse_if_merged(uow, member_id)
    return await uow.tiers.history(member_id, before_seq, limit)


async def grants(
    uow: AbstractUnitOfWork, member_id: str, before: tuple[datetime, str] | None, limit: int
) -> list[tuple[datetime, Grant]]:
    """A page of the member's grants, newest first, with each one's creation time."""
    await refuse_if_merged(uow, member_id)
    return await uow.tiers.list_grants(member_id, before, limit)
