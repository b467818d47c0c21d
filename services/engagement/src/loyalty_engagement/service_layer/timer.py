"""The timer's use cases: run the waiting entries that are due, and the sweeps that enter
members by time (birthdays, points about to expire, inactivity, a schedule over a segment).

Due entries are taken `FOR UPDATE SKIP LOCKED`, a chunk a transaction: replicas' timers never
take one entry at once, and an entry's steps run in the transaction that takes it, under the
step-run keys, so each runs once. A paused journey's entries are not taken: they wait, due,
for the resume. A purchase marks the member's entries waiting for one and runs those of active
journeys at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from loyalty_kit.logs import get_logger

from loyalty_engagement.adapters.journeys import StoredEntry
from loyalty_engagement.domain import timing
from loyalty_engagement.domain.journeys import EntryState, TriggerEvent, TriggerKind, UntilPurchase
from loyalty_engagement.service_layer import journeys, waits
from loyalty_engagement.service_layer.ports import Actions
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork

log = get_logger("loyalty.engagement.timer")
DUE_CHUNK = 100


async def run_due(
    uow_factory: Callable[[], EngagementUnitOfWork],
    actions: Actions,
    clock: Callable[[], datetime],
    chunk: int = DUE_CHUNK,
) -> int:
    """Run every due waiting entry of active journeys, a chunk a transaction; how many ran."""
    ran = 0
    while True:
        async with uow_factory() as uow:
            now = clock()
            entries = await uow.timing.due(now, chunk)
            if not entries:
                return ran
            for entry in entries:
                if await uow.timing.journey_active(entry.journey_id):
                    await go_on(uow, actions, entry, now)
                    ran += 1
                # else: paused since it was read; it stays due for the resume
            await uow.commit()
            if len(entries) < chunk:
                return ran


async def go_on(
    uow: EngagementUnitOfWork, actions: Actions, entry: StoredEntry, now: datetime
) -> None:
    """A waiting entry (locked by the caller) goes on from where it waited."""
    spec = await uow.journeys.spec_at(entry.journey_id, entry.version)
    if entry.waiting == waits.ADMIT:
        await journeys.admit(uow, actions, entry.journey_id, spec, entry, now)
        return
    waited = entry.next_step - 1
    if entry.waiting == waits.PURCHASE:
        step = spec.steps[waited]
        if entry.purchased_at is not None:
            await uow.journeys.finish_step(
                entry.entry_id, waited, "purchased", entry.purchased_at.isoformat()
            )
            if isinstance(step, UntilPurchase) and step.exit_on_purchase:
                await uow.journeys.set_entry_state(entry.entry_id, EntryState.COMPLETED, now)
                return
        else:
            await uow.journeys.finish_step(entry.entry_id, waited, "timed_out", "")
    elif entry.waiting == waits.WAIT:
        await uow.journeys.finish_step(entry.entry_id, waited, "waited", "")
    state = await journeys.run_steps(uow, actions, entry.journey_id, spec, entry, now)
    await uow.journeys.set_entry_state(entry.entry_id, state, now)


async def on_purchase(
    uow: EngagementUnitOfWork, actions: Actions, member_id: str, at: datetime, now: datetime
) -> None:
    """A purchase: the member's last activity, and the entries waiting for it."""
    await uow.timing.record_purchase(member_id, at)
    for entry in await uow.timing.purchased(member_id, at, now):
        if await uow.timing.journey_active(entry.journey_id):
            await go_on(uow, actions, entry, now)
        # else: due now, run by the timer once the journey is resumed


async def on_purchase_events(
    uow: EngagementUnitOfWork, actions: Actions, events: list[TriggerEvent], now: datetime
) -> None:
    """A batch's purchases, with the outcome of each handled alone in order: entered
    set-based into the journeys that act at once (`journeys.on_events`); when other purchase
    journeys run (waits, budgets, consents, paused), each event into those and its purchase
    noted one at a time, in order (an entry may wait for the next purchase); else (or when
    none of the events enters one of those) the members' activity and waiting entries
    set-based (`on_purchases`)."""
    if not events:
        return
    found = await uow.journeys.triggered_by([TriggerKind.PURCHASE])
    await journeys.on_events(uow, actions, events, now, [j for j in found if journeys.immediate(j)])
    others = [j for j in found if not journeys.immediate(j)]
    if not journeys.enters_any(others, events, now):  # none enters them: as if there were none
        await on_purchases(uow, actions, [(e.member_id, e.occurred_at) for e in events], now)
        return
    for event in events:
        await journeys.on_event(uow, actions, event, now, others)
        await on_purchase(uow, actions, event.member_id, event.occurred_at, now)


async def on_purchases(
    uow: EngagementUnitOfWork,
    actions: Actions,
    purchases: list[tuple[str, datetime]],
    now: datetime,
) -> None:
    """A batch's purchases in order, as `on_purchase` each: the last activities in one
    statement; the entries waiting for a purchase marked by each member's first purchase of
    the batch in one statement, but a member's later purchases one at a time in order (an
    entry gone on may wait for the next purchase again)."""
    last: dict[str, datetime] = {}
    first: dict[str, datetime] = {}
    later: list[tuple[str, datetime]] = []
    for member_id, at in purchases:
        last[member_id] = max(at, last.get(member_id, at))
        if member_id in first:
            later.append((member_id, at))
        else:
            first[member_id] = at
    await uow.timing.record_purchases(last)
    for entry in await uow.timing.purchased_many(first, now):
        if await uow.timing.journey_active(entry.journey_id):
            await go_on(uow, actions, entry, now)
    for member_id, at in later:
        for entry in await uow.timing.purchased(member_id, at, now):
            if await uow.timing.journey_active(entry.journey_id):
                await go_on(uow, actions, entry, now)


# --- sweeps ---------------------------------------------------------------------------------


def _birthdays_of(year: int, month: int, day: int) -> list[tuple[int, int]]:
    """The birthdays celebrated on a day: 29 February's on the 28th in other years."""
    days = [(month, day)]
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if (month, day) == (2, 28) and not leap:
        days.append((2, 29))
    return days


async def sweep(
    uow_factory: Callable[[], EngagementUnitOfWork], clock: Callable[[], datetime]
) -> int:
    """Enter members by time into active and paused journeys, each journey its own
    transaction (its sweep's progress row locked: one replica at a time); how many entered.
    The entries are due at once: `run_due` admits them (conditions, control, cap, steps)."""
    kinds = [
        TriggerKind.BIRTHDAY.value,
        TriggerKind.POINTS_EXPIRING.value,
        TriggerKind.INACTIVE.value,
        TriggerKind.SCHEDULE.value,
    ]
    async with uow_factory() as uow:
        found = await uow.timing.swept_journeys(kinds)
    entered = 0
    for journey_id, _version, _created in found:
        async with uow_factory() as uow:
            journey = await uow.journeys.get(journey_id)
            if journey is None:
                continue
            spec = journey.spec
            now = clock()
            if not spec.open_at(now):
                continue  # before its start or past its end: nobody is entered
            trigger = spec.trigger
            days = timedelta(days=trigger.days)
            if trigger.kind is TriggerKind.INACTIVE:
                since = await uow.timing.swept_until(journey_id, journey.created_at - days)
                entered += await uow.timing.enter_inactive(
                    journey_id, journey.version, since, now - days, now
                )
                await uow.timing.set_swept(journey_id, max(since, now - days))
            elif trigger.kind is TriggerKind.POINTS_EXPIRING:
                since = await uow.timing.swept_until(journey_id, journey.created_at + days)
                entered += await uow.timing.enter_expiring(
                    journey_id, journey.version, since, now + days, now
                )
                await uow.timing.set_swept(journey_id, max(since, now + days))
            elif trigger.kind is TriggerKind.SCHEDULE and trigger.schedule is not None:
                # Occurrences after the journey was made, each once: the sweep's row is
                # locked, and an entry is unique per member and occurrence.
                last = await uow.timing.swept_until(journey_id, journey.created_at)
                occurrence = timing.last_occurrence(trigger.schedule, spec.time_zone, last, now)
                if occurrence is not None:
                    entered += await uow.timing.enter_scheduled(
                        journey_id, journey.version, trigger.segment, occurrence, now
                    )
                    await uow.timing.set_swept(journey_id, occurrence)
            else:
                last = await uow.timing.swept_until(
                    journey_id, journey.created_at - timedelta(days=1)
                )
                today = timing.local_day(now, spec.time_zone)
                if timing.local_day(last, spec.time_zone) < today:
                    year, month, day = today
                    entered += await uow.timing.enter_birthdays(
                        journey_id, journey.version, _birthdays_of(year, month, day), year, now
                    )
                    await uow.timing.set_swept(journey_id, now)
            await uow.commit()
    if entered:
        log.info("journeys' sweeps entered members", entered=entered)
    return entered
