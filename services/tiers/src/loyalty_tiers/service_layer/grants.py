"""Tiers held by grant: a status match or a gift given by hand, revoked early, or ended when
its time is up (the member falls back to the tier the activity holds)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from loyalty_kit import audit
from loyalty_kit.jobs import DEFAULT_CHUNK_SIZE, Chunks

from loyalty_tiers.domain.errors import GrantNotFound
from loyalty_tiers.domain.grants import Grant, GrantKind, check_grant
from loyalty_tiers.service_layer.ladders import ladder
from loyalty_tiers.service_layer.members import member_for_update, refuse_if_erased
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


@dataclass
class Granted:
    grant: Grant
    tier: str  # the member's tier now
    renewed: bool = False


async def create_grant(
    uow: AbstractUnitOfWork,
    member_id: str,
    kind: GrantKind,
    tier: str,
    reason: str,
    ends_at: datetime | None,
    now: datetime,
) -> Granted:
    rules = await ladder(uow)
    check_grant(rules, tier, reason, ends_at, now, "tier_grant")
    assert ends_at is not None
    member = await member_for_update(uow, rules, member_id, now)
    await refuse_if_erased(uow, member_id)
    grant = Grant.given(member_id, kind, tier, reason, now, ends_at)
    before = {"tier": member.effective}
    member.grant(rules, grant, now)
    await uow.tiers.save([member])
    audit.note(
        before=before,
        after={"tier": member.effective, "grant_id": grant.grant_id, "granted_tier": tier},
    )
    return Granted(grant, member.effective)


async def grant_of(uow: AbstractUnitOfWork, member_id: str, grant_id: str) -> Grant:
    grant = await uow.tiers.grant(member_id, grant_id)
    if grant is None:
        raise GrantNotFound()
    return grant


async def revoke_grant(
    uow: AbstractUnitOfWork, member_id: str, grant_id: str, why: str, now: datetime
) -> Granted:
    rules = await ladder(uow)
    member = await member_for_update(uow, rules, member_id, now)
    grant = await grant_of(uow, member_id, grant_id)
    before = {"tier": member.effective, "grant_id": grant.grant_id, "granted_tier": grant.tier}
    member.revoke(rules, grant, why, now)
    await uow.tiers.save([member])
    audit.note(before=before, after={"tier": member.effective})
    return Granted(grant, member.effective)


@dataclass
class Expiry:
    ended: int = 0
    changed: int = 0


async def run_grant_expiry(
    uow_factory: Callable[[], AbstractUnitOfWork],
    as_of: datetime,
    chunk: int = DEFAULT_CHUNK_SIZE,
    *,
    limit: int = 0,
) -> Expiry:
    """End the grants whose time is up by `as_of`, chunk by chunk, until none is left or about
    `limit` ended (0: no limit; a member's lapsed grants end together, so it may go a little
    past); members fall back to the tier the activity holds. Idempotent: an ended grant is not
    in force any more."""
    total, chunks = Expiry(), Chunks(chunk, limit)
    while (size := chunks.next(total.ended)) > 0:
        async with uow_factory() as uow:
            rules = await uow.tiers.ladder()
            due = await uow.tiers.grants_due(as_of, size) if rules else []
            if rules is None or not due:
                return total
            members = list((await uow.tiers.lock_members(due)).values())
            for member in members:
                settled = member.end_lapsed_grants(rules, as_of)
                total.ended += settled.lapsed
                total.changed += settled.announced
            await uow.tiers.save(members)
            await uow.commit()
    return total


async def grants_due(uow: AbstractUnitOfWork, as_of: datetime) -> int:
    """Grants in force whose end time has passed by `as_of`."""
    return await uow.tiers.count_grants_due(as_of)
