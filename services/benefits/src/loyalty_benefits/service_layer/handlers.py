"""Use cases of the benefits service, each inside one unit of work (the reward redemption,
which spans the points service, is in `rewards.py`). What they announce they record on the
unit of work as domain events; it writes them to the outbox when it commits."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from loyalty_kit.caller import check_unit
from loyalty_kit.jobs import Chunks
from loyalty_kit.money import Amount

from loyalty_benefits.domain import events
from loyalty_benefits.domain.birthdays import birthdays_on, is_birthday
from loyalty_benefits.domain.birthdays import grant_key as birthday_grant_key
from loyalty_benefits.domain.catalogue import Catalogue, Reward
from loyalty_benefits.domain.coupons import Coupon, CouponState, issue
from loyalty_benefits.domain.entitlements import (
    Consumption,
    Entitlement,
    MemberTier,
    benefit_to_consume,
    tier_of,
    usable,
)
from loyalty_benefits.domain.errors import (
    ConsumptionAlreadyReleased,
    ConsumptionNotFound,
    CouponNotFound,
    CouponTemplateNotFound,
    NoCatalogue,
    QuotaExhausted,
    RewardNotFound,
)
from loyalty_benefits.domain.members import (
    FINAL,
    ensure_active,
    ensure_not_merged,
    restored_by_unmerge,
)
from loyalty_benefits.domain.members import erased as erased_state
from loyalty_benefits.domain.members import merged as merged_state
from loyalty_benefits.domain.members import reactivated as reactivated_state
from loyalty_benefits.domain.members import suspended as suspended_state
from loyalty_benefits.service_layer.ports import BenefitsWork


async def catalogue(uow: BenefitsWork) -> Catalogue:
    found = await uow.catalogue.latest()
    if found is None:
        raise NoCatalogue()
    return found


async def publish_catalogue(uow: BenefitsWork, new: Catalogue) -> Catalogue:
    new.validate()
    new.version, new.created_at = await uow.catalogue.add(new)
    return new


# --- members' state ---------------------------------------------------------------------------


async def active_member(uow: BenefitsWork, member_id: str) -> None:
    """MemberNotActive (FAILED_PRECONDITION, MEMBER_SUSPENDED / _MERGED / _ERASED) for a member
    identity suspended, merged into another or erased; one primary-key lookup that, for an
    active member, finds nothing. Everything a member does or is given asks this first; giving
    back and reading do not."""
    ensure_active(await uow.member_states.get(member_id))


async def not_merged(uow: BenefitsWork, member_id: str) -> None:
    ensure_not_merged(await uow.member_states.get(member_id))


async def active_among(uow: BenefitsWork, member_ids: list[str]) -> list[str]:
    """`member_ids` without the members who are not active (background grants skip them)."""
    inactive = await uow.member_states.among(member_ids)
    return [m for m in member_ids if m not in inactive]


# --- entitlements and consumption ------------------------------------------------------------


async def entitlements(
    uow: BenefitsWork, member_id: str, unit: str, now: datetime
) -> tuple[str, list[Entitlement]]:
    rules = await catalogue(uow)
    member, state = await uow.members.standing(member_id)
    ensure_not_merged(state)
    tier = tier_of(rules, member)
    year_end = member.tier_year_end if member else None
    benefits = usable(rules, tier, unit, now)
    periods = {b.code: rules.period_of(b, now, year_end) for b in benefits}
    used = await uow.consumptions.usage(
        member_id, [(b.code, periods[b.code].key) for b in benefits if b.quota]
    )
    return tier, [
        Entitlement(b, periods[b.code], used.get((b.code, periods[b.code].key), 0))
        for b in benefits
    ]


async def consume(
    uow: BenefitsWork,
    member_id: str,
    benefit_code: str,
    unit: str,
    order_id: str,
    now: datetime,
) -> tuple[Consumption, Entitlement]:
    await active_member(uow, member_id)
    rules = await catalogue(uow)
    member = await uow.members.get(member_id)
    benefit = benefit_to_consume(rules, benefit_code, tier_of(rules, member), unit, now)
    period = rules.period_of(benefit, now, member.tier_year_end if member else None)
    if benefit.quota and not await uow.consumptions.take_quota(
        member_id, benefit.code, period.key, benefit.quota
    ):
        raise QuotaExhausted(benefit.code, benefit.quota, period.end)
    consumption = Consumption(
        consumption_id=str(uuid.uuid4()),
        member_id=member_id,
        benefit_code=benefit.code,
        unit=unit,
        order_id=order_id,
        period_key=period.key,
        counted=benefit.quota > 0,
        catalogue_version=rules.version,
        consumed_at=now,
    )
    await uow.consumptions.add(consumption)
    used = await uow.consumptions.usage(member_id, [(benefit.code, period.key)])
    uow.record(
        events.BenefitConsumed(
            member_id, consumption.consumption_id, benefit.code, unit, order_id, now
        )
    )
    return consumption, Entitlement(benefit, period, used.get((benefit.code, period.key), 0))


async def release(
    uow: BenefitsWork,
    member_id: str,
    consumption_id: str,
    reason: str,
    caller_unit: str | None,
    now: datetime,
) -> Consumption:
    """Give a consumption's quota back. `caller_unit`: the unit asking (None: an admin), which
    may only release what it consumed."""
    consumption = await uow.consumptions.get(member_id, consumption_id)
    if consumption is None:
        raise ConsumptionNotFound(consumption_id)
    check_unit(consumption.unit, caller_unit)
    if consumption.released_at is not None:
        raise ConsumptionAlreadyReleased(consumption_id)
    if consumption.counted:
        await uow.consumptions.give_back_quota(
            member_id, consumption.benefit_code, consumption.period_key
        )
    consumption.released_at = now
    consumption.release_reason = reason
    await uow.consumptions.release(consumption)
    uow.record(
        events.BenefitReleased(
            member_id, consumption_id, consumption.benefit_code, consumption.unit, reason, now
        )
    )
    return consumption


# --- coupons ---------------------------------------------------------------------------------


async def issue_coupons(
    uow: BenefitsWork,
    template_code: str,
    member_ids: list[str],
    issuer_unit: str | None,
    now: datetime,
    grant_key: str = "",
) -> list[Coupon]:
    """Coupons of a template for each member. `issuer_unit`: the unit issuing (None: an admin),
    which may only issue coupons of its own or the group's templates. A member who is not
    active refuses the whole request (MemberNotActive naming the first such member): nothing
    is issued. With `grant_key`, a grant (`grant_coupon`): at most one coupon per member and
    key, ever, whoever grants it (a journey's welcome gift and the fixed trigger's share
    `welcome:{tier}`)."""
    rules = await catalogue(uow)
    template = rules.template(template_code)
    if template is None:
        raise CouponTemplateNotFound(template_code)
    if template.unit:  # a group-wide template may be issued by any unit
        check_unit(template.unit, issuer_unit)
    inactive = await uow.member_states.among(member_ids)
    for member_id in member_ids:
        ensure_active(inactive.get(member_id))
    if grant_key:
        return [
            await grant_coupon(uow, rules, template.code, member_id, grant_key, now)
            for member_id in member_ids
        ]
    coupons = [issue(template, member_id, "issue", now) for member_id in member_ids]
    await uow.coupons.add_many(coupons)
    for coupon in coupons:
        uow.record(coupon.issued(now))
    return coupons


async def grant_coupon(
    uow: BenefitsWork,
    rules: Catalogue,
    template_code: str,
    member_id: str,
    grant_key: str,
    now: datetime,
) -> Coupon:
    """Issue a coupon once per member and grant (a welcome gift, a reward): granting again
    returns the coupon granted the first time."""
    coupon, _ = await grant_coupon_once(uow, rules, template_code, member_id, grant_key, now)
    return coupon


async def grant_coupon_once(
    uow: BenefitsWork,
    rules: Catalogue,
    template_code: str,
    member_id: str,
    grant_key: str,
    now: datetime,
) -> tuple[Coupon, bool]:
    """As `grant_coupon`, and whether this call issued it (False: granted before, perhaps by
    another replica a moment ago: the unique (member, grant key) decides)."""
    template = rules.template(template_code)
    if template is None:
        raise CouponTemplateNotFound(template_code)
    coupon = issue(template, member_id, grant_key, now)
    if await uow.coupons.add(coupon, grant_key):
        uow.record(coupon.issued(now))
        return coupon, True
    granted = await uow.coupons.by_grant(member_id, grant_key)
    assert granted is not None
    return granted, False


async def coupon(uow: BenefitsWork, member_id: str, code: str) -> Coupon:
    await not_merged(uow, member_id)
    found = await uow.coupons.get(member_id, code.upper())
    if found is None:
        raise CouponNotFound(code)
    return found


async def redeem_coupon(
    uow: BenefitsWork,
    member_id: str,
    code: str,
    unit: str,
    order_id: str,
    order: Amount,
    now: datetime,
) -> tuple[Coupon, Amount]:
    await active_member(uow, member_id)
    found = await uow.coupons.get(member_id, code.upper(), lock=True)
    if found is None:
        raise CouponNotFound(code)
    discount = found.redeem(unit, order_id, order, now)
    await uow.coupons.save_redemption(found)
    uow.record(
        events.CouponRedeemed(
            member_id, found.code, found.template_code, unit, order_id, discount, now
        )
    )
    return found, discount


async def release_coupon(
    uow: BenefitsWork,
    member_id: str,
    code: str,
    reason: str,
    caller_unit: str | None,
    now: datetime,
) -> Coupon:
    """Give a redeemed coupon back (a cancelled checkout, a refunded order). `caller_unit`: the
    unit asking (None: an admin), which may only release what it redeemed. The row is locked
    as for a redemption: of two releases at once, the second finds the coupon issued."""
    found = await uow.coupons.get(member_id, code.upper(), lock=True)
    if found is None:
        raise CouponNotFound(code)
    if found.state is CouponState.REDEEMED:
        check_unit(found.redeemed_unit, caller_unit)
    undone = found.release()
    await uow.coupons.save_redemption(found)
    uow.record(
        events.CouponReleased(
            member_id=member_id,
            code=found.code,
            template_code=found.template_code,
            unit=undone.unit,
            order_id=undone.order_id,
            reason=reason,
            discount=undone.discount,
            occurred_at=now,
        )
    )
    return found


async def member_coupons(
    uow: BenefitsWork,
    member_id: str,
    state: CouponState | None,
    now: datetime,
    before: int | None,
    limit: int,
) -> list[tuple[int, Coupon]]:
    await not_merged(uow, member_id)
    return await uow.coupons.of_member(member_id, state, now, before, limit)


# --- triggers --------------------------------------------------------------------------------


UNMERGED = "unmerged"  # the reason of a restored member's TierChanged
CARRIED_OVER = "carried_over"  # a legacy tier a member import brought: no welcome gift


async def on_tier_changed(
    uow: BenefitsWork,
    member_id: str,
    from_tier: str,
    to_tier: str,
    effective_at: datetime,
    tier_year_end: datetime | None,
    now: datetime,
    reason: str = "",
    *,
    welcome_gift: bool = True,
) -> None:
    """Learn the member's tier; on an upgrade, grant the new tier's welcome gift (once per
    member and tier, ever: falling back and climbing again does not grant it twice) unless
    `welcome_gift` is off (`LOYALTY_BENEFITS_FIXED_WELCOME_GIFTS`, off by default: engagement's
    journey grants it under the same grant key `welcome:{tier}`). A
    suspended member's tier is learned but gets no gift; a merged or erased member's change
    is ignored (what was theirs has moved or gone)."""
    current = await uow.members.get(member_id, lock=True)
    if current is not None and current.effective_at > effective_at:
        return  # an older change arriving late
    state = await uow.member_states.get(member_id)
    if state is not None and state.state in FINAL and reason != UNMERGED:
        return
    # A restored member's tier may come before identity's MemberUnmerged: learned, no gift.
    await uow.members.save(MemberTier(member_id, to_tier, effective_at, tier_year_end))
    if state is not None:
        return  # suspended: no welcome gift
    if reason == CARRIED_OVER or not welcome_gift:
        return  # a legacy tier brought over (nothing to welcome), or journeys grant it
    rules = await uow.catalogue.latest()
    if rules is None or not rules.is_upgrade(from_tier, to_tier):
        return
    template = rules.welcome_template(to_tier)
    if template is not None:
        await grant_coupon(uow, rules, template.code, member_id, f"welcome:{to_tier}", now)


async def on_member_suspended(uow: BenefitsWork, member_id: str, now: datetime) -> None:
    """Until reactivated, the member consumes, redeems and is issued nothing."""
    known = await uow.member_states.get(member_id, lock=True)
    state = suspended_state(member_id, known, now)
    if state != known:
        await uow.member_states.save(state)


async def on_member_reactivated(uow: BenefitsWork, member_id: str) -> None:
    """Active again: the row goes (a merged or erased member stays so)."""
    known = await uow.member_states.get(member_id, lock=True)
    if known is not None and reactivated_state(known) is None:
        await uow.member_states.forget(member_id)


async def on_member_merged(
    uow: BenefitsWork, survivor_id: str, absorbed_id: str, now: datetime
) -> None:
    """The survivor takes the absorbed member's coupons, consumptions (uses in the same quota
    period add up) and reward redemptions. Its tier comes from the tiers service, which
    announces the merged tier with its own TierChanged. The absorbed ID is refused from now on
    (MEMBER_MERGED, naming the survivor), as are those merged into it earlier, which now name
    the survivor."""
    known = await uow.member_states.get(absorbed_id, lock=True)
    state = merged_state(absorbed_id, survivor_id, known, now)
    if state != known:
        await uow.member_states.save(state)
    await uow.member_states.forward_merged(absorbed_id, survivor_id, now)
    await uow.coupons.move_member(absorbed_id, survivor_id)
    await uow.consumptions.move_member(absorbed_id, survivor_id)
    await uow.rewards.move_member(absorbed_id, survivor_id)
    await uow.members.forget(absorbed_id)
    await uow.birthdays.forget(absorbed_id)


async def on_member_unmerged(
    uow: BenefitsWork, survivor_id: str, restored_id: str, now: datetime
) -> None:
    """Undo a merge: the coupons, consumptions (and the quota they use) and reward redemptions
    that came from the restored member go back to it, and its ID is accepted again. Its tier
    comes from the tiers service's TierChanged (reason "unmerged"). Members merged into the
    restored one before its own merge stay merged into the survivor, as identity keeps them.
    A redelivery changes nothing."""
    known = await uow.member_states.get(restored_id, lock=True)
    if not restored_by_unmerge(known, survivor_id):
        return
    await uow.member_states.forget(restored_id)
    await uow.coupons.give_back_member(survivor_id, restored_id)
    await uow.consumptions.give_back_member(survivor_id, restored_id)
    await uow.rewards.give_back_member(survivor_id, restored_id)


async def on_member_erased(uow: BenefitsWork, member_id: str, now: datetime) -> None:
    """Right to be forgotten: unused coupons and quota usage go; what was consumed, redeemed or
    bought stays only as anonymous counts (units settle on them). The ID is refused from now on
    (MEMBER_ERASED)."""
    known = await uow.member_states.get(member_id, lock=True)
    state = erased_state(member_id, known, now)
    if state != known:
        await uow.member_states.save(state)
    await uow.coupons.erase_member(member_id)
    await uow.consumptions.erase_member(member_id)
    await uow.rewards.erase_member(member_id)
    await uow.members.forget(member_id)
    await uow.birthdays.forget(member_id)


async def on_profile_changed(uow: BenefitsWork, member_id: str, month: int, day: int) -> None:
    """Remember the birthday (month and day only; 0: none on file)."""
    await uow.birthdays.save(member_id, month, day)


async def on_members_imported(uow: BenefitsWork, birthdays: list[tuple[str, int, int]]) -> int:
    """The birthdays a chunk of an import brings (member_id, month, day), remembered as
    ProfileChanged's are, in one statement: a member without one on file keeps what it had,
    one merged or erased is left out (a suspended one is not), as is a day no one is born on.
    Answers how many were remembered."""
    valid = {m: (month, day) for m, month, day in birthdays if is_birthday(month, day)}
    inactive = await uow.member_states.among(sorted(valid))
    gone = {m for m, known in inactive.items() if known.state in FINAL}
    kept = [(m, month, day) for m, (month, day) in valid.items() if m not in gone]
    await uow.birthdays.save_many(kept)
    return len(kept)


@dataclass
class BirthdayRun:
    celebrating: int = 0
    granted: int = 0
    # The last member looked at when a run stopped at its limit (None: the day's walk is done).
    after: str | None = None


async def birthday_of(uow: BenefitsWork, now: datetime) -> date | None:
    """The day `now` is in the catalogue's time zone (None: no catalogue yet, no gifts)."""
    rules = await uow.catalogue.latest()
    return None if rules is None else now.astimezone(rules.zone()).date()


async def birthday_gifts_chunk(
    uow: BenefitsWork, now: datetime, after: str | None, chunk: int
) -> tuple[BirthdayRun, str | None]:
    """Grant the birthday coupons of up to `chunk` members celebrating today (in the
    catalogue's time zone), after member `after`; the last member seen (None: done). Each
    member's coupon is a grant of the year: running again grants nothing twice. Members who
    are not active (suspended) are skipped."""
    rules = await uow.catalogue.latest()
    if rules is None:
        return BirthdayRun(), None
    today = now.astimezone(rules.zone()).date()
    members = await uow.birthdays.celebrating(birthdays_on(today), after, chunk)
    run = BirthdayRun(celebrating=len(members))
    active = set(await active_among(uow, [m for m, _ in members]))
    for member_id, tier in members:
        if member_id not in active:
            continue
        template = rules.birthday_template(tier or rules.entry_tier)
        if template is None:
            continue
        key = birthday_grant_key(today)
        if await uow.coupons.by_grant(member_id, key) is None:
            # Another replica's round may grant it meanwhile: count only what this one issued.
            _, issued = await grant_coupon_once(uow, rules, template.code, member_id, key, now)
            run.granted += issued
    return run, (members[-1][0] if len(members) == chunk else None)


async def run_birthday_gifts(
    uow_factory: Callable[[], BenefitsWork],
    now: datetime,
    chunk: int,
    *,
    after: str | None = None,
    limit: int = 0,
) -> BirthdayRun:
    """Walk the members celebrating today by member id, from after `after`, chunk by chunk, to
    the last or until `limit` were looked at (0: no limit; then `after` says where it stopped)."""
    total, chunks = BirthdayRun(), Chunks(chunk, limit)
    while (size := chunks.next(total.celebrating)) > 0:
        async with uow_factory() as uow:
            part, after = await birthday_gifts_chunk(uow, now, after, size)
            await uow.commit()
        total.celebrating += part.celebrating
        total.granted += part.granted
        if after is None:
            return total
    total.after = after
    return total


async def celebrating_after(uow: BenefitsWork, now: datetime, after: str | None) -> int:
    """Members celebrating today after member `after` (None: all of them)."""
    today = await birthday_of(uow, now)
    if today is None:
        return 0
    return await uow.birthdays.count_celebrating(birthdays_on(today), after)


# --- rewards catalogue -----------------------------------------------------------------------


async def rewards(uow: BenefitsWork, unit: str) -> list[tuple[Reward, int]]:
    rules = await catalogue(uow)
    offered = sorted((r for r in rules.rewards if not unit or r.unit == unit), key=lambda r: r.code)
    stock = await uow.rewards.stock([r.code for r in offered])
    return [(r, stock.get(r.code, 0)) for r in offered]


async def restock(
    uow: BenefitsWork, reward_code: str, quantity: int, caller_unit: str | None
) -> tuple[Reward, int]:
    """Add stock: the unit offering the reward (or an admin, `caller_unit` None)."""
    rules = await catalogue(uow)
    reward = rules.reward(reward_code)
    if reward is None:
        raise RewardNotFound(reward_code)
    check_unit(reward.unit, caller_unit)
    return reward, await uow.rewards.restock(reward.code, quantity)
