"""Use cases of the tiers service, each inside one unit of work.

Activity arrives as points events; each is recorded once (by its posting id) and the member's
tier is re-judged at once: an upgrade happens seconds after the purchase. Refunds reduce the
activity but never downgrade on the spot; retention is judged at the end of the tier year.

Two tiers are kept per member: the one the activity holds (`tier`, judged by the ladder) and
the one the member has (`effective`): the higher of it and any grant or paid membership in
force. Every change goes through a `Settlement`, which announces TierChanged (always about the
tier the member has) when that changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loyalty.tiers.v1 import events_pb2
from loyalty_kit.errors import AlreadyExists, FailedPrecondition, MemberNotActive, NotFound
from loyalty_kit.timestamps import add_months, timestamp

from loyalty_tiers.adapters.repository import HistoryEntry, MemberTier, new_id
from loyalty_tiers.domain.grants import (
    Grant,
    GrantKind,
    GrantNotActive,
    GrantState,
    check_grant,
    check_membership,
    holding_grant,
)
from loyalty_tiers.domain.ladder import (
    TIER_YEAR_MONTHS,
    Ladder,
    Progress,
    Totals,
)
from loyalty_tiers.service_layer.uow import TiersUnitOfWork

# Reasons that can only move a member up: if the tier drops in the same step, it is because
# a grant's time ran out meanwhile.
RISING = {"qualified", "merged", "granted", "membership_purchased", "membership_renewed"}


def utc_now() -> datetime:
    return datetime.now(UTC)


class NoLadder(FailedPrecondition):
    reason = "NO_LADDER"

    def __init__(self) -> None:
        super().__init__("no tier ladder is in force: publish one with UpdateLadder")


async def ladder(uow: TiersUnitOfWork) -> Ladder:
    found = await uow.tiers.ladder()
    if found is None:
        raise NoLadder()
    return found


async def publish_ladder(uow: TiersUnitOfWork, new: Ladder) -> Ladder:
    new.validate()
    new.version = await uow.tiers.add_ladder(new)
    return new


class Settlement:
    """Collects what a step changes, for one member or a chunk of them, then writes it all:
    members' rows, grants whose time ran out, history and TierChanged events."""

    def __init__(self, rules: Ladder) -> None:
        self.rules = rules
        self.members: list[MemberTier] = []
        self.lapsed: list[Grant] = []
        self.history: list[HistoryEntry] = []
        self.events: list[events_pb2.TierChanged] = []

    def settle(
        self,
        member: MemberTier,
        grants: Sequence[Grant],
        reason: str,
        at: datetime,
        *,
        effective_at: datetime | None = None,
        announce_same: bool = False,
        announce: bool = False,
    ) -> Grant | None:
        """Place the member at the higher of the earned tier and the grants in force at `at`;
        announce it if it changed (or, with `announce_same`, if a judgement kept it; with
        `announce`, in any case)."""
        lapsed = [g for g in grants if g.state is GrantState.ACTIVE and g.ends_at <= at]
        for grant in lapsed:
            grant.stop(GrantState.ENDED, grant.ends_at)
        self.lapsed.extend(lapsed)
        holder = holding_grant(self.rules, member.tier, grants, at)
        before, member.effective = member.effective, holder.tier if holder else member.tier
        self.members.append(member)
        dropped = self.rules.index_of(member.effective) < self.rules.index_of(before)
        if lapsed and dropped and (reason in RISING or reason == "grant_ended"):
            reason = "grant_ended"
            effective_at = effective_at or max(g.ends_at for g in lapsed)
        if member.effective != before or (announce_same and holder is None) or announce:
            self._announce(member, before, reason, effective_at or at, holder)
        return holder

    def _announce(
        self, member: MemberTier, before: str, reason: str, at: datetime, holder: Grant | None
    ) -> None:
        self.history.append(HistoryEntry(member.member_id, before, member.effective, reason, at))
        event = events_pb2.TierChanged(
            member_id=member.member_id,
            from_tier=before,
            to_tier=member.effective,
            reason=reason,
            effective_at=timestamp(at),
        )
        if member.tier_year_end is not None:
            event.tier_year_end.CopyFrom(timestamp(member.tier_year_end))
        if holder is not None:
            event.grant_end_time.CopyFrom(timestamp(holder.ends_at))
        self.events.append(event)

    async def write(self, uow: TiersUnitOfWork) -> None:
        await uow.tiers.save_member_tiers(self.members)
        await uow.tiers.save_grants(self.lapsed)
        await uow.tiers.add_history(self.history)
        await uow.outbox.add_many(self.events)


async def _settle_one(
    uow: TiersUnitOfWork, rules: Ladder, member: MemberTier, reason: str, at: datetime
) -> Grant | None:
    grants = (await uow.tiers.active_grants([member.member_id])).get(member.member_id, [])
    settlement = Settlement(rules)
    holder = settlement.settle(member, grants, reason, at)
    await settlement.write(uow)
    return holder


async def _locked_member(
    uow: TiersUnitOfWork, rules: Ladder, member_id: str, now: datetime
) -> MemberTier:
    member = await uow.tiers.member_tier(member_id, lock=True)
    if member is None:
        await refuse_if_merged(uow, member_id)
    return member or await uow.tiers.ensure_member(member_id, rules.tiers[0].code, now)


async def refuse_if_merged(uow: TiersUnitOfWork, member_id: str) -> None:
    """An absorbed member's id is refused on every read and write, naming the survivor
    (MEMBER_MERGED with merged_into), as every service does. Asked only where the member has
    no tier row: a merge deletes the absorbed member's."""
    survivor = await uow.tiers.merged_into(member_id)
    if survivor is not None:
        raise MemberNotActive(member_id, "merged", survivor)


async def refuse_if_erased(uow: TiersUnitOfWork, member_id: str) -> None:
    """An erased member is given nothing new (a grant, a membership): FAILED_PRECONDITION /
    MEMBER_ERASED, as points and benefits answer. Reads still answer, and what undoes
    something (a revocation, a membership refund) still goes through, as a refund does at
    points."""
    if await uow.tiers.erased(member_id):
        raise MemberNotActive(member_id, "erased")


async def on_member_erased(uow: TiersUnitOfWork, member_id: str, now: datetime) -> None:
    """The member's tier state holds no personal data and stays as it stood (history, grants,
    activity: ids and figures only), but it is judged no more and leaves the distribution;
    new grants and memberships are refused. Idempotent."""
    await uow.tiers.lock_members([member_id])
    await uow.tiers.record_erasure(member_id, now)


# -- activity and upgrades ---------------------------------------------------------------------


async def record_activity(
    uow: TiersUnitOfWork,
    member_id: str,
    event_id: str,
    occurred_at: datetime,
    unit: str,
    totals: Totals,
    now: datetime,
) -> None:
    # Activity of an absorbed member that was under way when the merge landed is the
    # survivor's (and goes back with the rest if the merge is undone).
    survivor = await uow.tiers.merged_into(member_id)
    origin = member_id if survivor else None
    member_id = survivor or member_id
    if await uow.tiers.record_activity(member_id, event_id, occurred_at, unit, totals, origin):
        await judge_upgrade(uow, member_id, now)


async def judge_upgrade(uow: TiersUnitOfWork, member_id: str, now: datetime) -> None:
    """Upgrade at once when the window's activity supports a higher tier; never a downgrade
    here (the tier year decides)."""
    rules = await uow.tiers.ladder()
    if rules is None:
        return
    member = await _locked_member(uow, rules, member_id, now)
    if not await _raise_to_activity(uow, rules, member, now) and member.effective == member.tier:
        return  # nothing moved and no grant is in play
    await _settle_one(uow, rules, member, "qualified", now)


async def _raise_to_activity(
    uow: TiersUnitOfWork, rules: Ladder, member: MemberTier, now: datetime
) -> bool:
    """Raise the earned tier to what the member's window of activity supports, if higher (a
    new tier year starts); whether it rose."""
    since = rules.window_start(now, member.tier_year_end)
    window = rules.activity(await uow.tiers.activity(member.member_id, since, now))
    supported = rules.supported(window)
    if supported <= rules.index_of(member.tier):
        return False
    member.tier, member.since = rules.tiers[supported].code, now
    member.tier_year_end = add_months(now, TIER_YEAR_MONTHS)
    return True


async def on_member_merged(
    uow: TiersUnitOfWork, survivor_id: str, absorbed_id: str, now: datetime
) -> None:
    """Both members' activity and grants count for the survivor, who keeps the higher tier (and
    the later tier year end); the combined activity may qualify for more at once."""
    rules = await uow.tiers.ladder()
    locked = await uow.tiers.lock_members([survivor_id, absorbed_id])
    await uow.tiers.move_member(absorbed_id, survivor_id)
    before = (locked.get(survivor_id), locked.get(absorbed_id))
    await uow.tiers.record_merge(absorbed_id, survivor_id, now, before)
    if rules is None:
        return
    survivor = locked.get(survivor_id) or await _locked_member(uow, rules, survivor_id, now)
    absorbed = locked.get(absorbed_id)
    if absorbed is not None and rules.index_of(absorbed.tier) > rules.index_of(survivor.tier):
        survivor.tier, survivor.since = absorbed.tier, absorbed.since
        survivor.tier_year_end = absorbed.tier_year_end
    # The absorbed member's grants are the survivor's now: settling counts them too.
    await _settle_one(uow, rules, survivor, "merged", now)
    await judge_upgrade(uow, survivor_id, now)


async def on_member_unmerged(
    uow: TiersUnitOfWork, survivor_id: str, restored_id: str, now: datetime
) -> None:
    """Undo a merge: the activity, grants and paid memberships that came from the restored
    member go back to it. Each member is then judged on its own record at once: it returns to
    the tier it held before the merge (its tier year too; one that ended meanwhile is judged at
    the next year end on its own activity) or to what its own activity supports now, if that
    is higher. The survivor never gains from an unmerge and drops at once when only the
    restored member's tier or activity held it up: the tier came from a mistake, so it does not
    wait for the tier year's end as a refund does. The restored member's tier is announced
    (TierChanged, reason "unmerged") even if unchanged, as the other services forgot it at
    the merge. A redelivery changes nothing."""
    if await uow.tiers.merged_into(restored_id) != survivor_id:
        return  # done already, or a merge this service never saw
    locked = await uow.tiers.lock_members([survivor_id, restored_id])
    before = await uow.tiers.forget_merge(restored_id)
    assert before is not None
    await uow.tiers.give_back(survivor_id, restored_id)
    rules = await uow.tiers.ladder()
    if rules is None:
        return
    entry = rules.tiers[0].code
    survivor_before, restored = before
    restored = restored or MemberTier(restored_id, entry, now, None)
    await _raise_to_activity(uow, rules, restored, now)

    survivor = locked.get(survivor_id) or await _locked_member(uow, rules, survivor_id, now)
    if survivor_before is not None:
        await _raise_to_activity(uow, rules, survivor_before, now)
        if rules.index_of(survivor_before.tier) < rules.index_of(survivor.tier):
            survivor.tier, survivor.since = survivor_before.tier, survivor_before.since
            survivor.tier_year_end = survivor_before.tier_year_end

    grants = await uow.tiers.active_grants([survivor_id, restored_id])
    settlement = Settlement(rules)
    settlement.settle(restored, grants.get(restored_id, []), "unmerged", now, announce=True)
    settlement.settle(survivor, grants.get(survivor_id, []), "unmerged", now)
    await settlement.write(uow)


# -- the tier year -----------------------------------------------------------------------------


@dataclass
class YearEnd:
    judged: int = 0
    retained: int = 0
    downgraded: int = 0


async def year_end_chunk(uow: TiersUnitOfWork, as_of: datetime, chunk: int) -> YearEnd:
    """Judge up to `chunk` tier years that ended by `as_of` (and their grace days), in a few
    statements for the whole chunk. Each judgement moves the member's tier year on, so running
    again judges nothing twice; a member whose several years passed unjudged is judged year by
    year. Rows another replica is judging are skipped."""
    rules = await ladder(uow)
    members = await uow.tiers.members_due(as_of - timedelta(days=rules.grace_days), chunk)
    result = YearEnd()
    if not members:
        return result
    windows = {m.member_id: rules.tier_year(m.tier_year_end) for m in members if m.tier_year_end}
    years = await uow.tiers.activities([(m, *w) for m, w in windows.items()])
    grants = await uow.tiers.active_grants([m.member_id for m in members])
    settlement = Settlement(rules)
    for member in members:
        end = member.tier_year_end
        assert end is not None  # members_due only finds members with a tier year
        current = rules.index_of(member.tier)
        after = rules.after_tier_year(current, rules.activity(years.get(member.member_id, {})))
        result.judged += 1
        if after == current:
            result.retained += 1
            member.tier_year_end = add_months(end, TIER_YEAR_MONTHS)
        else:
            result.downgraded += 1
            member.tier, member.since = rules.tiers[after].code, end
            member.tier_year_end = add_months(end, TIER_YEAR_MONTHS) if after > 0 else None
        settlement.settle(
            member,
            grants.get(member.member_id, []),
            "retained" if after == current else "downgraded",
            as_of,
            effective_at=end,
            announce_same=after == current,
        )
    await settlement.write(uow)
    return result


async def run_year_end(
    uow_factory: Callable[[], TiersUnitOfWork], as_of: datetime, chunk: int
) -> YearEnd:
    total = YearEnd()
    async with uow_factory() as uow:
        if await uow.tiers.ladder() is None:
            return total  # nothing to judge against yet
    while True:
        async with uow_factory() as uow:
            part = await year_end_chunk(uow, as_of, chunk)
            await uow.commit()
        if part.judged == 0:
            return total
        total.judged += part.judged
        total.retained += part.retained
        total.downgraded += part.downgraded


# -- grants and paid memberships ---------------------------------------------------------------


@dataclass
class Granted:
    grant: Grant
    tier: str  # the member's tier now
    renewed: bool = False


async def create_grant(
    uow: TiersUnitOfWork,
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
    member = await _locked_member(uow, rules, member_id, now)
    await refuse_if_erased(uow, member_id)
    grant = Grant(member_id, new_id(), kind, tier, reason.strip(), now, ends_at)
    await uow.tiers.add_grant(grant)
    await _settle_one(uow, rules, member, "granted", now)
    return Granted(grant, member.effective)


async def _grant_of(uow: TiersUnitOfWork, member_id: str, grant_id: str) -> Grant:
    grant = await uow.tiers.grant(member_id, grant_id)
    if grant is None:
        raise NotFound("no such tier grant", reason="GRANT_NOT_FOUND")
    return grant


async def revoke_grant(
    uow: TiersUnitOfWork, member_id: str, grant_id: str, why: str, now: datetime
) -> Granted:
    rules = await ladder(uow)
    member = await _locked_member(uow, rules, member_id, now)
    grant = await _grant_of(uow, member_id, grant_id)
    if not grant.in_force(now):
        raise GrantNotActive(grant)
    grant.stop(GrantState.REVOKED, now, why.strip())
    await uow.tiers.save_grant(grant)
    await _settle_one(uow, rules, member, "grant_revoked", now)
    return Granted(grant, member.effective)


class MembershipOrderUsed(AlreadyExists):
    reason = "MEMBERSHIP_ORDER_USED"

    def __init__(self, unit: str, order_id: str) -> None:
        super().__init__(
            "this order already bought a membership",
            metadata={"unit": unit, "order_id": order_id},
        )


async def purchase_membership(
    uow: TiersUnitOfWork,
    member_id: str,
    unit: str,
    tier: str,
    order_id: str,
    months: int,
    now: datetime,
) -> Granted:
    """A paid membership: the tier for the months bought. The same tier bought again at the
    same unit while it runs renews it (the months are added to its end)."""
    rules = await ladder(uow)
    check_membership(rules, tier, order_id, months)
    member = await _locked_member(uow, rules, member_id, now)  # one purchase at a time
    await refuse_if_erased(uow, member_id)
    if await uow.tiers.membership_order(unit, order_id) is not None:
        raise MembershipOrderUsed(unit, order_id)
    running = await uow.tiers.running_membership(member_id, unit, tier, now)
    if running is not None:
        running.renew(months, now)
        await uow.tiers.save_grant(running)
        grant = running
    else:
        reason = f"paid membership bought at {unit}"
        ends_at = add_months(now, months)
        grant = Grant(
            member_id, new_id(), GrantKind.PAID_MEMBERSHIP, tier, reason, now, ends_at, unit=unit
        )
        await uow.tiers.add_grant(grant)
    await uow.tiers.add_membership_order(unit, order_id, grant, months)
    why = "membership_renewed" if running else "membership_purchased"
    await _settle_one(uow, rules, member, why, now)
    return Granted(grant, member.effective, renewed=running is not None)


async def refund_membership(
    uow: TiersUnitOfWork, member_id: str, unit: str, order_id: str, now: datetime
) -> Granted:
    """A refunded membership order ends the membership now (a refund of a membership already
    over changes nothing)."""
    rules = await ladder(uow)
    found = await uow.tiers.membership_order(unit, order_id)
    if found is None or found[0] != member_id:
        raise NotFound(
            "no membership bought with this order by this member at this unit",
            reason="MEMBERSHIP_ORDER_NOT_FOUND",
            metadata={"unit": unit, "order_id": order_id},
        )
    member = await _locked_member(uow, rules, member_id, now)
    grant = await _grant_of(uow, member_id, found[1])
    if grant.in_force(now):
        grant.stop(GrantState.REVOKED, now, f"order {order_id} refunded")
        await uow.tiers.save_grant(grant)
        await _settle_one(uow, rules, member, "membership_refunded", now)
    return Granted(grant, member.effective)


@dataclass
class Expiry:
    ended: int = 0
    changed: int = 0


async def run_grant_expiry(
    uow_factory: Callable[[], TiersUnitOfWork], as_of: datetime, chunk: int = 500
) -> Expiry:
    """End the grants whose time is up by `as_of`, chunk by chunk; members fall back to the
    tier the activity holds. Idempotent: an ended grant is not in force any more."""
    total = Expiry()
    while True:
        async with uow_factory() as uow:
            rules = await uow.tiers.ladder()
            due = await uow.tiers.grants_due(as_of, chunk) if rules else []
            if rules is None or not due:
                return total
            members = await uow.tiers.lock_members(due)
            grants = await uow.tiers.active_grants(list(members))
            settlement = Settlement(rules)
            for member_id, member in members.items():
                settlement.settle(member, grants.get(member_id, []), "grant_ended", as_of)
            await settlement.write(uow)
            await uow.commit()
        total.ended += len(settlement.lapsed)
        total.changed += len(settlement.events)


# -- what members and the group see --------------------------------------------------------------


@dataclass
class TierView:
    member: MemberTier
    tier: str
    holder: Grant | None
    next_tier: str
    progress: Progress
    retention: Progress
    currency: str  # the ladder's base currency, of spend and growth


async def _standing(
    uow: TiersUnitOfWork, rules: Ladder, member_id: str, now: datetime
) -> tuple[MemberTier, Grant | None]:
    member = await uow.tiers.member_tier(member_id)
    if member is None:
        await refuse_if_merged(uow, member_id)
        member = MemberTier(member_id, rules.tiers[0].code, now, None)
    grants = (await uow.tiers.active_grants([member_id])).get(member_id, [])
    return member, holding_grant(rules, member.tier, grants, now)


async def member_view(uow: TiersUnitOfWork, member_id: str, now: datetime) -> TierView:
    rules = await ladder(uow)
    member, holder = await _standing(uow, rules, member_id, now)
    tier = holder.tier if holder else member.tier
    since = rules.window_start(now, member.tier_year_end)
    window = rules.activity(await uow.tiers.activity(member_id, since, now))
    next_tier, progress = rules.progress(rules.index_of(tier), window)
    retention: Progress = []
    if member.tier_year_end is not None:
        start, _ = rules.tier_year(member.tier_year_end)
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
    uow: TiersUnitOfWork,
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
    member, holder = await _standing(uow, rules, member_id, now)
    tier = holder.tier if holder else member.tier
    since = rules.window_start(now, member.tier_year_end)
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


async def distribution(uow: TiersUnitOfWork) -> tuple[Ladder, list[tuple[str, int]]]:
    rules = await ladder(uow)
    counts = await uow.tiers.distribution()
    return rules, [(t.code, counts.get(t.code, 0)) for t in rules.tiers]
