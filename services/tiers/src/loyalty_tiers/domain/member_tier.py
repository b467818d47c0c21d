"""A member's place on the ladder: the `MemberTier` aggregate (pure).

Two tiers are kept per member: the one the activity holds (`tier`, judged by the ladder) and
the one the member has (`effective`): the higher of it and any grant or paid membership in
force. Every change ends in `settle`, which places the member at the higher of the two and,
when the tier the member has changes, records a history entry and a `TierChanged` event.

The aggregate is the member's tier row and the grants not yet ended. Activity is not part of
it: the use case reads the window's activity and hands it in, already summed by the ladder.
What a unit of work must store (the row, new or changed grants, membership orders, history)
and the events to publish are collected here until the repository saves the member.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from loyalty_kit.timestamps import add_months

from loyalty_tiers.domain.events import TierChanged
from loyalty_tiers.domain.grants import (
    Grant,
    GrantNotActive,
    GrantState,
    MembershipOrder,
    holding_grant,
)
from loyalty_tiers.domain.ladder import TIER_YEAR_MONTHS, Activity, Ladder

# Reasons that can only move a member up: if the tier drops in the same step, it is because
# a grant's time ran out meanwhile.
RISING = frozenset(
    {
        "qualified",
        "merged",
        "granted",
        "carried_over",
        "membership_purchased",
        "membership_renewed",
    }
)
# A legacy tier brought over by a member import: the member had it already (no welcome gift).
CARRIED_OVER = "carried_over"


@dataclass(frozen=True)
class HistoryEntry:
    """One change of the tier the member has, as `ListTierHistory` shows it."""

    member_id: str
    from_tier: str
    to_tier: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Settled:
    """What placing a member did: the grant holding the tier (if any), how many grants ran
    out, and whether a change was announced."""

    holder: Grant | None
    lapsed: int
    announced: bool


@dataclass
class MemberTier:
    member_id: str
    tier: str  # what the member's own activity holds
    since: datetime
    tier_year_end: datetime | None
    effective: str = ""  # what was last announced: the higher of `tier` and any grant
    grants: list[Grant] = field(default_factory=list)  # not ended (some may be past their end)
    # Not yet stored: grants added or changed (by id: added ones are inserted), membership
    # orders, history; and the events to publish.
    changed_grants: dict[str, tuple[Grant, bool]] = field(default_factory=dict, repr=False)
    new_orders: list[MembershipOrder] = field(default_factory=list, repr=False)
    new_history: list[HistoryEntry] = field(default_factory=list, repr=False)
    events: list[TierChanged] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.effective = self.effective or self.tier

    @classmethod
    def entry(cls, member_id: str, ladder: Ladder, at: datetime) -> MemberTier:
        """A member first seen: the entry tier, no tier year."""
        return cls(member_id, ladder.tiers[0].code, at, None)

    # -- activity ---------------------------------------------------------------------------

    def window_start(self, ladder: Ladder, now: datetime) -> datetime:
        """Where the qualification window that ends `now` starts for this member."""
        return ladder.window_start(now, self.tier_year_end)

    def rise_to(self, ladder: Ladder, window: Activity, now: datetime) -> bool:
        """Raise the earned tier to what the window's activity supports, if higher (a new tier
        year starts); whether it rose. Never lower: the tier year decides that."""
        supported = ladder.supported(window)
        if supported <= ladder.index_of(self.tier):
            return False
        self.tier, self.since = ladder.tiers[supported].code, now
        self.tier_year_end = add_months(now, TIER_YEAR_MONTHS)
        return True

    def qualify(self, ladder: Ladder, window: Activity, now: datetime) -> bool:
        """Upgrade at once when the window supports a higher tier; whether there is anything
        to store (a rise, or a grant in play that settling may end)."""
        if not self.rise_to(ladder, window, now) and self.effective == self.tier:
            return False
        self.settle(ladder, "qualified", now)
        return True

    # -- the tier year ----------------------------------------------------------------------

    def tier_year(self, ladder: Ladder) -> tuple[datetime, datetime]:
        """The activity that counts toward keeping the tier: the tier year and its grace."""
        assert self.tier_year_end is not None, "only a member with a tier year is judged"
        return ladder.tier_year(self.tier_year_end)

    def judge_tier_year(self, ladder: Ladder, year: Activity, as_of: datetime) -> bool:
        """The tier year ended: keep the tier for another year with enough activity in it, or
        move down (as the ladder's policy says); whether it was kept. Either way the tier year
        moves on, so the same year is never judged twice."""
        end = self.tier_year_end
        assert end is not None, "only a member with a tier year is judged"
        current = ladder.index_of(self.tier)
        after = ladder.after_tier_year(current, year)
        kept = after == current
        if kept:
            self.tier_year_end = add_months(end, TIER_YEAR_MONTHS)
        else:
            self.tier, self.since = ladder.tiers[after].code, end
            self.tier_year_end = add_months(end, TIER_YEAR_MONTHS) if after > 0 else None
        reason = "retained" if kept else "downgraded"
        self.settle(ladder, reason, as_of, effective_at=end, announce_same=kept)
        return kept

    # -- grants and paid memberships ------------------------------------------------------

    def grant(self, ladder: Ladder, grant: Grant, at: datetime, reason: str = "granted") -> None:
        """A status match or a gift: the member has its tier while it runs (never lower).
        `reason` is CARRIED_OVER for a legacy tier a member import brought."""
        self.grants.append(grant)
        self._changed(grant, added=True)
        self.settle(ladder, reason, at)

    def revoke(self, ladder: Ladder, grant: Grant, why: str, at: datetime) -> None:
        """End a grant in force early; the member falls back to what else holds the tier."""
        if not grant.in_force(at):
            raise GrantNotActive(grant)
        self._stop(grant, GrantState.REVOKED, at, why.strip())
        self.settle(ladder, "grant_revoked", at)

    def buy_membership(
        self, ladder: Ladder, unit: str, tier: str, order_id: str, months: int, at: datetime
    ) -> tuple[Grant, bool]:
        """A paid membership: the tier for the months bought. The same tier bought again at
        the same unit while it runs renews it (the months are added to its end). The grant,
        and whether it was a renewal."""
        running = self._running_membership(unit, tier, at)
        if running is not None:
            running.renew(months, at)
            self._changed(running)
            grant = running
        else:
            grant = Grant.paid_membership(self.member_id, unit, tier, months, at)
            self.grants.append(grant)
            self._changed(grant, added=True)
        grant.order_ids.append(order_id)
        self.new_orders.append(
            MembershipOrder(unit, order_id, self.member_id, grant.grant_id, months)
        )
        self.settle(ladder, "membership_renewed" if running else "membership_purchased", at)
        return grant, running is not None

    def refund_membership(self, ladder: Ladder, grant: Grant, order_id: str, at: datetime) -> bool:
        """A refunded order ends its membership now; whether it did (a membership already
        over changes nothing)."""
        if not grant.in_force(at):
            return False
        self._stop(grant, GrantState.REVOKED, at, f"order {order_id} refunded")
        self.settle(ladder, "membership_refunded", at)
        return True

    def end_lapsed_grants(self, ladder: Ladder, as_of: datetime) -> Settled:
        """Grants whose time is up end; the member falls back to what else holds the tier."""
        return self.settle(ladder, "grant_ended", as_of)

    # -- merges, unmerges, erasure ------------------------------------------------------------

    def absorb(self, ladder: Ladder, absorbed: MemberTier | None, at: datetime) -> None:
        """A merge: the survivor keeps the higher earned tier (with its tier year). The
        absorbed member's grants are the survivor's already (the repository moved them)."""
        if absorbed is not None and ladder.index_of(absorbed.tier) > ladder.index_of(self.tier):
            self.tier, self.since = absorbed.tier, absorbed.since
            self.tier_year_end = absorbed.tier_year_end
        self.settle(ladder, "merged", at)

    def unmerge(self, ladder: Ladder, before_merge: MemberTier | None, at: datetime) -> None:
        """An unmerge, for the survivor: it never gains, and returns at once to the tier it
        held before the merge (already raised to what its own activity supports now) when
        only the other member's tier or activity held it higher."""
        if before_merge is not None and ladder.index_of(before_merge.tier) < ladder.index_of(
            self.tier
        ):
            self.tier, self.since = before_merge.tier, before_merge.since
            self.tier_year_end = before_merge.tier_year_end
        self.settle(ladder, "unmerged", at)

    def restore(self, ladder: Ladder, at: datetime) -> None:
        """An unmerge, for the restored member: its tier is announced even if unchanged (the
        other services forgot it at the merge)."""
        self.settle(ladder, "unmerged", at, announce=True)

    def erase(self) -> None:
        """The member was erased: the tier stays as it stood but is judged no more."""
        self.tier_year_end = None

    # -- placing the member -----------------------------------------------------------------

    def settle(
        self,
        ladder: Ladder,
        reason: str,
        at: datetime,
        *,
        effective_at: datetime | None = None,
        announce_same: bool = False,
        announce: bool = False,
    ) -> Settled:
        """Place the member at the higher of the earned tier and the grants in force at `at`
        (grants whose time is up end now); announce it if it changed (or, with
        `announce_same`, if a judgement kept it; with `announce`, in any case)."""
        lapsed = [g for g in self.grants if g.state is GrantState.ACTIVE and g.ends_at <= at]
        for grant in lapsed:
            self._stop(grant, GrantState.ENDED, grant.ends_at)
        holder = holding_grant(ladder, self.tier, self.grants, at)
        before, self.effective = self.effective, holder.tier if holder else self.tier
        dropped = ladder.index_of(self.effective) < ladder.index_of(before)
        if lapsed and dropped and (reason in RISING or reason == "grant_ended"):
            reason = "grant_ended"
            effective_at = effective_at or max(g.ends_at for g in lapsed)
        announced = self.effective != before or (announce_same and holder is None) or announce
        if announced:
            self._announce(before, reason, effective_at or at, holder)
        return Settled(holder, len(lapsed), announced)

    def _announce(self, before: str, reason: str, at: datetime, holder: Grant | None) -> None:
        self.new_history.append(HistoryEntry(self.member_id, before, self.effective, reason, at))
        self.events.append(
            TierChanged(
                member_id=self.member_id,
                from_tier=before,
                to_tier=self.effective,
                reason=reason,
                effective_at=at,
                tier_year_end=self.tier_year_end,
                grant_ends_at=holder.ends_at if holder else None,
            )
        )

    def _running_membership(self, unit: str, tier: str, at: datetime) -> Grant | None:
        running = [
            g
            for g in self.grants
            if g.is_membership_of(unit, tier) and g.state is GrantState.ACTIVE and g.ends_at > at
        ]
        return max(running, key=lambda g: g.ends_at, default=None)

    def _stop(self, grant: Grant, state: GrantState, at: datetime, why: str = "") -> None:
        grant.stop(state, at, why)
        self.grants = [g for g in self.grants if g.grant_id != grant.grant_id]
        self._changed(grant)

    def _changed(self, grant: Grant, *, added: bool = False) -> None:
        _, was_added = self.changed_grants.get(grant.grant_id, (grant, False))
        self.changed_grants[grant.grant_id] = (grant, added or was_added)
