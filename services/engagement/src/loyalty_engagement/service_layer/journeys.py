"""Journeys' use cases: define, change (a new version), pause and resume a journey; enter a
member on a triggering event; run an entry's steps exactly once.

Exactly once: an entry is unique per journey version, member and triggering event (its ID is
derived from them), a step run per entry and step; the step's call to the service that acts
carries a key derived from both, so a crash between the call and the commit repeats the same
call, which that service answers without acting twice. A step's run row and its effect's
record commit with the consumer's inbox entry, in one transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from loyalty.engagement.v1 import events_pb2
from loyalty_kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from loyalty_kit.logs import get_logger
from loyalty_kit.timestamps import timestamp

from loyalty_engagement.adapters.journeys import StepRun, StoredEntry, StoredJourney, StoredMessage
from loyalty_engagement.domain import journeys as domain
from loyalty_engagement.domain import timing
from loyalty_engagement.domain.journeys import (
    AwardPoints,
    ChangeTags,
    EntryState,
    IssueCoupon,
    JourneySpec,
    JourneyState,
    MemberFacts,
    SendMessage,
    TriggerEvent,
)
from loyalty_engagement.service_layer import waits
from loyalty_engagement.service_layer.ports import ActionRefused, Actions, channel_of
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork

log = get_logger("loyalty.engagement.journeys")
RESUME_CHUNK = 100  # pending entries run per transaction on resume


class JourneyNotFound(NotFound):
    reason = "JOURNEY_NOT_FOUND"


class JourneyStateConflict(FailedPrecondition):
    reason = "JOURNEY_STATE"


class JourneyKeyTaken(AlreadyExists):
    reason = "JOURNEY_KEY_TAKEN"


def check(spec: JourneySpec, path: str = "journey") -> None:
    bad = domain.validate(spec, path)
    if bad:
        raise InvalidArgument.of(bad)


async def create(
    uow: EngagementUnitOfWork,
    spec: JourneySpec,
    state: JourneyState,
    now: datetime,
    key: str = "",
) -> StoredJourney:
    """A new journey, version 1; with `key`, the only one with that key (JOURNEY_KEY_TAKEN
    otherwise)."""
    check(spec)
    if state not in (JourneyState.DRAFT, JourneyState.ACTIVE):
        raise InvalidArgument.of([FieldViolation("journey.state", "DRAFT or ACTIVE on create")])
    journey_id = str(uuid.uuid4())
    if not await uow.journeys.add(journey_id, spec, state, now, key):
        raise JourneyKeyTaken(f"a journey with the key {key!r} exists already")
    return await get(uow, journey_id)


async def get(uow: EngagementUnitOfWork, journey_id: str) -> StoredJourney:
    found = await uow.journeys.get(journey_id)
    if found is None:
        raise JourneyNotFound(f"journeys/{journey_id} does not exist")
    return found


async def update(
    uow: EngagementUnitOfWork, journey_id: str, spec: JourneySpec, now: datetime, key: str = ""
) -> StoredJourney:
    """A new version of the journey. `key` gives a journey without one its key (a journey made
    before the programme file named it); a key once set never changes."""
    check(spec)
    journey = await uow.journeys.get(journey_id, for_update=True)
    if journey is None:
        raise JourneyNotFound(f"journeys/{journey_id} does not exist")
    if key and key != journey.key:
        if journey.key:
            raise InvalidArgument.of(
                [FieldViolation("journey.key", f"is {journey.key!r}: a key never changes")]
            )
        if not await uow.journeys.set_key(journey_id, key):
            raise JourneyKeyTaken(f"a journey with the key {key!r} exists already")
    await uow.journeys.new_version(journey, spec, now)
    return await get(uow, journey_id)


async def pause(uow: EngagementUnitOfWork, journey_id: str, now: datetime) -> StoredJourney:
    journey = await uow.journeys.get(journey_id, for_update=True)
    if journey is None:
        raise JourneyNotFound(f"journeys/{journey_id} does not exist")
    if journey.state is not JourneyState.PAUSED:
        if journey.state is not JourneyState.ACTIVE:
            raise JourneyStateConflict(f"a {journey.state.value} journey cannot be paused")
        await uow.journeys.set_state(journey_id, JourneyState.PAUSED, now)
    return await get(uow, journey_id)


async def activate(uow: EngagementUnitOfWork, journey_id: str, now: datetime) -> StoredJourney:
    """A draft or paused journey becomes active (its pending entries are run after this
    commits: `run_pending`)."""
    journey = await uow.journeys.get(journey_id, for_update=True)
    if journey is None:
        raise JourneyNotFound(f"journeys/{journey_id} does not exist")
    if journey.state is JourneyState.ENDED:
        raise JourneyStateConflict("an ended journey cannot be resumed")
    if journey.state is not JourneyState.ACTIVE:
        await uow.journeys.set_state(journey_id, JourneyState.ACTIVE, now)
    return await get(uow, journey_id)


async def run_pending(
    uow_factory: Callable[[], EngagementUnitOfWork],
    actions: Actions,
    journey_id: str,
    clock: Callable[[], datetime],
) -> int:
    """Run a resumed journey's pending entries, a chunk a transaction, oldest first; how many
    ran. Entries another replica holds are skipped (it runs them)."""
    ran = 0
    while True:
        async with uow_factory() as uow:
            journey = await uow.journeys.get(journey_id)
            if journey is None or journey.state is not JourneyState.ACTIVE:
                return ran  # paused again meanwhile: the rest wait
            entries = await uow.journeys.pending(journey_id, RESUME_CHUNK)
            if not entries:
                return ran
            for entry in entries:
                spec = await uow.journeys.spec_at(entry.journey_id, entry.version)
                await admit(uow, actions, journey_id, spec, entry, clock())
            await uow.commit()
            ran += len(entries)


# --- entering members -----------------------------------------------------------------------


async def on_event(
    uow: EngagementUnitOfWork,
    actions: Actions,
    event: TriggerEvent,
    now: datetime,
    among: Sequence[StoredJourney] | None = None,
) -> None:
    """Enter the member into every journey `event` triggers (of `among` when given, read
    by the caller with `triggered_by`): pending while the journey is paused, else admitted
    (capped, held out, skipped, or its steps run)."""
    found = await uow.journeys.triggered_by([event.kind]) if among is None else among
    for journey in found:
        spec = journey.spec
        if (entry := _entry_for(journey, event, now)) is None:
            continue
        paused = journey.state is JourneyState.PAUSED
        if not paused and spec.frequency_cap.max_entries:
            await uow.journeys.lock_member(journey.journey_id, event.member_id)
        if not await uow.journeys.enter(entry) or paused:
            continue  # handled before (the same event again), or kept for the resume
        await admit(uow, actions, journey.journey_id, spec, entry, now)


def _entry_for(journey: StoredJourney, event: TriggerEvent, now: datetime) -> StoredEntry | None:
    """The entry `event` makes into `journey` (its id the same for the same event and
    version), or None when the event does not trigger it or the journey is not open then."""
    spec = journey.spec
    if not domain.triggered_by(spec.trigger, event) or not spec.open_at(event.occurred_at):
        return None
    entry_id = domain.entry_id(journey.journey_id, journey.version, event.member_id, event.key)
    return StoredEntry(
        entry_id,
        journey.journey_id,
        journey.version,
        event.member_id,
        event.key,
        event.unit,
        EntryState.PENDING,
        now,
    )


ACTS_AT_ONCE = 32  # a batch's calls to the services that act, in flight at once


def enters_any(
    found: Sequence[StoredJourney], events: Sequence[TriggerEvent], now: datetime
) -> bool:
    """Whether one of `events` makes an entry into one of the journeys `found` (as `on_event`
    would: without one, it does nothing for them)."""
    return any(_entry_for(j, e, now) is not None for e in events for j in found)


def immediate(journey: StoredJourney) -> bool:
    """An active journey whose entries nothing but their own event, the member's earlier
    entries (its frequency cap) and badges (held or lacking badge conditions, read for the
    batch's members at once) decide: no budget, tier or consent condition, and only steps
    that act at once (a coupon, points, tags). A batch of events enters them set-based
    (`on_events`)."""
    spec = journey.spec
    return (
        journey.state is JourneyState.ACTIVE
        and not (spec.budget.points or spec.budget.coupons)
        and not spec.conditions.tiers
        and not spec.conditions.needs_member
        and all(isinstance(step, IssueCoupon | AwardPoints | ChangeTags) for step in spec.steps)
    )


async def on_events(
    uow: EngagementUnitOfWork,
    actions: Actions,
    events: Sequence[TriggerEvent],
    now: datetime,
    found: Sequence[StoredJourney],
) -> None:
    """A batch's trigger events entered into the `immediate` journeys `found` (read by the
    caller with `triggered_by`), each as `on_event` would have entered it, set-based: the
    capped journeys' members locked and their earlier entries read once (the batch's own
    counted in order), the entries recorded in one statement with the state each comes to
    (those recorded before, or by a concurrent handler, are passed over), the steps' calls
    made a few at once (each with its step's key), the step runs in one statement; an entry
    whose step was refused is set FAILED after. Badge conditions are judged on the members'
    badges read once, and every admitted entry (treatment or control) is announced
    (JourneyEntered) as `admit` announces it."""
    assert all(immediate(j) for j in found)
    entries: dict[str, tuple[StoredJourney, StoredEntry]] = {}  # the same event twice: once
    for event in events:
        for journey in found:
            if (entry := _entry_for(journey, event, now)) is not None:
                entries.setdefault(entry.entry_id, (journey, entry))
    # Locked before anything is read: a concurrent handler of the same members commits first.
    earlier = await _earlier_entries(uow, found, [e for _, e in entries.values()], now)
    recorded = await uow.journeys.recorded(list(entries))
    badges = await _badges_of(
        uow, [(j, e) for j, e in entries.values() if e.entry_id not in recorded]
    )
    decided: list[StoredEntry] = []
    admitted: list[tuple[StoredEntry, bool]] = []  # announced, with whether held out
    acting: list[tuple[StoredJourney, StoredEntry]] = []
    for journey, entry in entries.values():
        if entry.entry_id in recorded:
            continue  # handled before (the same event again)
        spec = journey.spec
        state = EntryState.COMPLETED
        capped = spec.frequency_cap.max_entries
        if capped and domain.over_cap(
            spec.frequency_cap, earlier.setdefault((journey.journey_id, entry.member_id), []), now
        ):
            state = EntryState.CAPPED
        elif not domain.conditions_hold(
            spec.conditions,
            entry.unit,
            MemberFacts(badges=badges.get(entry.member_id, frozenset())),
        ):
            state = EntryState.SKIPPED
        elif domain.held_out(journey.journey_id, entry.member_id, spec.control_share):
            state = EntryState.HELD_OUT
        if state in (EntryState.COMPLETED, EntryState.HELD_OUT):
            admitted.append((entry, state is EntryState.HELD_OUT))
            if capped:
                earlier[(journey.journey_id, entry.member_id)].append(entry.entered_at)
        decided.append(dataclasses.replace(entry, state=state))
        if state is EntryState.COMPLETED:
            acting.append((journey, entry))
    new = await uow.journeys.enter_many(decided)
    acting = [(j, e) for j, e in acting if e.entry_id in new]  # else a concurrent handler's
    await _announce_entries(uow, [(e, control) for e, control in admitted if e.entry_id in new])
    gate = asyncio.Semaphore(ACTS_AT_ONCE)

    async def act(journey: StoredJourney, entry: StoredEntry) -> list[StepRun]:
        async with gate:
            return await _act_at_once(uow, actions, journey, entry, now)

    done = await asyncio.gather(*(act(j, e) for j, e in acting))
    await uow.journeys.record_steps([run for runs in done for run in runs], now)
    failed = [
        (entry.entry_id, EntryState.FAILED)
        for (_, entry), runs in zip(acting, done, strict=True)
        if runs and runs[-1].outcome == "failed"
    ]
    await uow.journeys.set_entry_states(failed, now)


async def _badges_of(
    uow: EngagementUnitOfWork, entering: Sequence[tuple[StoredJourney, StoredEntry]]
) -> dict[str, frozenset[str]]:
    """The entering members' badges that the journeys' badge conditions name, in one read."""
    named: set[str] = set()
    members: set[str] = set()
    for journey, entry in entering:
        conditions = journey.spec.conditions
        if conditions.needs_badges:
            named.update(conditions.held_badges, conditions.lacking_badges)
            members.add(entry.member_id)
    return await uow.challenges.held_by(sorted(members), sorted(named))


async def _earlier_entries(
    uow: EngagementUnitOfWork,
    found: Sequence[StoredJourney],
    entering: list[StoredEntry],
    now: datetime,
) -> dict[tuple[str, str], list[datetime]]:
    """For the capped journeys: the members' earlier counted entries, the members locked
    first as `on_event` locks them."""
    earlier: dict[tuple[str, str], list[datetime]] = {}
    for journey in found:
        cap = journey.spec.frequency_cap
        if not cap.max_entries:
            continue
        members = sorted({e.member_id for e in entering if e.journey_id == journey.journey_id})
        if not members:
            continue
        await uow.journeys.lock_members(journey.journey_id, members)
        times = await uow.journeys.entered_since(journey.journey_id, members, now - cap.period)
        for member_id, at in times.items():
            earlier[(journey.journey_id, member_id)] = at
    return earlier


async def _act_at_once(
    uow: EngagementUnitOfWork,
    actions: Actions,
    journey: StoredJourney,
    entry: StoredEntry,
    now: datetime,
) -> list[StepRun]:
    """An immediate journey's steps for a new entry, in order, up to a definite refusal."""
    runs: list[StepRun] = []
    spec = journey.spec
    for index, step in enumerate(spec.steps):
        key = domain.step_key(entry.entry_id, index)
        try:
            outcome, detail = await _act(
                uow, actions, journey.journey_id, spec, entry, index, step, key, now
            )
        except ActionRefused as refused:
            runs.append(StepRun(entry.entry_id, index, "failed", refused.reason))
            log.warning(
                "journey step refused",
                journey_id=journey.journey_id,
                entry_id=entry.entry_id,
                step=index,
                reason=refused.reason,
            )
            return runs
        runs.append(StepRun(entry.entry_id, index, outcome, detail))
    return runs


async def admit(
    uow: EngagementUnitOfWork,
    actions: Actions,
    journey_id: str,
    spec: JourneySpec,
    entry: StoredEntry,
    now: datetime,
) -> None:
    """Decide a recorded entry's fate and act on it: capped, skipped (conditions), held out
    (control group), or its steps run."""
    journeys = uow.journeys
    if spec.frequency_cap.max_entries:
        await journeys.lock_member(journey_id, entry.member_id)
        # This entry is itself recorded (pending): it does not count against itself.
        earlier = await journeys.entered_at(
            journey_id, entry.member_id, now - spec.frequency_cap.period, entry.entry_id
        )
        if domain.over_cap(spec.frequency_cap, earlier, now):
            await journeys.set_entry_state(entry.entry_id, EntryState.CAPPED, now)
            return
    conditions = spec.conditions
    member = MemberFacts(
        tier=await journeys.tier(entry.member_id) if conditions.tiers else "",
        consents=(
            await actions.consents(entry.member_id) if conditions.needs_member else frozenset()
        ),
        badges=(
            await uow.challenges.held_of(
                entry.member_id, (*conditions.held_badges, *conditions.lacking_badges)
            )
            if conditions.needs_badges
            else frozenset()
        ),
    )
    if not domain.conditions_hold(spec.conditions, entry.unit, member):
        await journeys.set_entry_state(entry.entry_id, EntryState.SKIPPED, now)
        return
    control = domain.held_out(journey_id, entry.member_id, spec.control_share)
    await _announce_entry(uow, journey_id, entry, control)
    if control:
        await journeys.set_entry_state(entry.entry_id, EntryState.HELD_OUT, now)
        return
    state = await run_steps(uow, actions, journey_id, spec, entry, now)
    await journeys.set_entry_state(entry.entry_id, state, now)


async def run_steps(
    uow: EngagementUnitOfWork,
    actions: Actions,
    journey_id: str,
    spec: JourneySpec,
    entry: StoredEntry,
    now: datetime,
) -> EntryState:
    """Each step from the entry's next one, not run before, in order: up to a wait or a
    message due in quiet hours (the entry then waits, stored with its due time, for the timer:
    WAITING); a definite refusal stops the entry (FAILED)."""
    for index in range(entry.next_step, len(spec.steps)):
        step = spec.steps[index]
        if domain.is_wait(step):
            due, waiting = waits.due_of(spec, step, now)
            if due is None:  # a window open now
                if await uow.journeys.claim_step(entry.entry_id, index, now):
                    await uow.journeys.finish_step(entry.entry_id, index, "waited", "")
                continue
            if await uow.journeys.claim_step(entry.entry_id, index, now):
                await uow.journeys.finish_step(entry.entry_id, index, "waiting", due.isoformat())
            await uow.timing.wait(entry.entry_id, index + 1, due, waiting, now)
            return EntryState.WAITING
        if isinstance(step, SendMessage):
            zone = await _quiet_zone(uow, spec, entry.member_id)
            quiet_end = timing.quiet_until(now, spec.quiet_hours, zone)
            if quiet_end is not None:  # deferred, not dropped: the timer sends it then
                await uow.timing.wait(entry.entry_id, index, quiet_end, waits.QUIET, now)
                return EntryState.WAITING
        if not await uow.journeys.claim_step(entry.entry_id, index, now):
            continue
        points, coupons = domain.budget_cost(step)
        budgeted = (points or coupons) and (spec.budget.points or spec.budget.coupons)
        if budgeted and not await uow.timing.spend(journey_id, spec.budget, points, coupons):
            await uow.journeys.finish_step(entry.entry_id, index, "budget_exhausted", "")
            continue
        key = domain.step_key(entry.entry_id, index)
        try:
            outcome, detail = await _act(
                uow, actions, journey_id, spec, entry, index, step, key, now
            )
        except ActionRefused as refused:
            if budgeted:
                await uow.timing.refund(journey_id, points, coupons)
            await uow.journeys.finish_step(entry.entry_id, index, "failed", refused.reason)
            log.warning(
                "journey step refused",
                journey_id=journey_id,
                entry_id=entry.entry_id,
                step=index,
                reason=refused.reason,
            )
            return EntryState.FAILED
        await uow.journeys.finish_step(entry.entry_id, index, outcome, detail)
    return EntryState.COMPLETED


async def _quiet_zone(uow: EngagementUnitOfWork, spec: JourneySpec, member_id: str) -> str:
    """The zone quiet hours are read in: the member's when identity has one, else the
    journey's."""
    if spec.quiet_hours is None:
        return spec.time_zone
    return timing.zone_for(await uow.timing.time_zone(member_id), spec.time_zone)


async def _act(
    uow: EngagementUnitOfWork,
    actions: Actions,
    journey_id: str,
    spec: JourneySpec,
    entry: StoredEntry,
    index: int,
    step: domain.Step,
    key: str,
    now: datetime,
) -> tuple[str, str]:
    member_id = entry.member_id
    match step:
        case IssueCoupon(template=template, unit=unit):
            issuer = unit or spec.unit
            grant_key = step.grant_key_at(now, spec.time_zone)
            return "done", await actions.issue_coupon(member_id, template, issuer, key, grant_key)
        case AwardPoints(points=points, funding_unit=funding, reason=reason):
            why = reason or f"journey {spec.display_name}"
            return "done", await actions.award_points(member_id, points, funding, why, key)
        case ChangeTags(add=add, remove=remove):
            await actions.change_tags(member_id, add, remove, key)
            return "done", ""
        case SendMessage(purpose=purpose, body=body, channel=channel):
            # Consent is read at the source when the message goes, not when the journey began.
            if purpose not in await actions.consents(member_id):
                return "no_consent", purpose
            message = StoredMessage(
                str(uuid.uuid4()),
                member_id,
                journey_id,
                channel,
                purpose,
                body,
                secrets.token_urlsafe(24),
                now,
            )
            await channel_of(channel).send(uow, message, entry.entry_id, index)
            return "done", message.message_id
    raise TypeError(step)


async def _announce_entry(
    uow: EngagementUnitOfWork, journey_id: str, entry: StoredEntry, control: bool
) -> None:
    """JourneyEntered for an admitted entry, treatment or control (insights measures the
    journey's uplift from them); its event ID derived from the entry's, so a repeat is one."""
    await uow.outbox.add(_entered(entry, control), event_id=_entered_id(entry))


async def _announce_entries(
    uow: EngagementUnitOfWork, admitted: Sequence[tuple[StoredEntry, bool]]
) -> None:
    """`_announce_entry` of a batch's admitted entries, in one statement."""
    if admitted:
        await uow.outbox.add_many(
            [_entered(entry, control) for entry, control in admitted],
            event_ids=[_entered_id(entry) for entry, _ in admitted],
        )


def _entered(entry: StoredEntry, control: bool) -> events_pb2.JourneyEntered:
    return events_pb2.JourneyEntered(
        journey_id=entry.journey_id,
        member_id=entry.member_id,
        entered_at=timestamp(entry.entered_at),
        control=control,
        unit=entry.unit,
        entry_id=entry.entry_id,
    )


def _entered_id(entry: StoredEntry) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"journey-entered:{entry.entry_id}")
