"""Journeys, entries, step runs, the development sink's messages and members' tiers in the
engagement database (SQLAlchemy Core over the unit of work's session)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_engagement.adapters.tables import (
    journey_entries,
    journey_versions,
    journeys,
    member_tiers,
    messages,
    step_runs,
)
from loyalty_engagement.domain.journeys import (
    AwardPoints,
    Budget,
    ChangeTags,
    Conditions,
    Delay,
    EntryState,
    FrequencyCap,
    IssueCoupon,
    JourneySpec,
    JourneyState,
    SendMessage,
    Step,
    Trigger,
    TriggerKind,
    UntilPurchase,
    Window,
)
from loyalty_engagement.domain.timing import DailyWindow, Schedule


@dataclass(frozen=True)
class StoredJourney:
    journey_id: str
    unit: str
    state: JourneyState
    version: int
    spec: JourneySpec
    created_at: datetime
    updated_at: datetime
    key: str = ""  # the programme file's name for it ("" : none)


@dataclass(frozen=True)
class StoredEntry:
    entry_id: str
    journey_id: str
    version: int
    member_id: str
    trigger_key: str
    unit: str
    state: EntryState
    entered_at: datetime
    next_step: int = 0
    waiting: str = ""  # "wait", "purchase", "quiet", "admit" while WAITING
    purchased_at: datetime | None = None
    due_at: datetime | None = None


@dataclass(frozen=True)
class StepRun:
    entry_id: str
    step: int
    outcome: str
    detail: str


@dataclass(frozen=True)
class StoredMessage:
    message_id: str
    member_id: str
    journey_id: str
    channel: str
    purpose: str
    body: str
    unsubscribe_token: str
    sent_at: datetime


# --- the definition as a JSON document ------------------------------------------------------


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def spec_document(spec: JourneySpec) -> dict[str, Any]:
    return {
        "display_name": spec.display_name,
        "unit": spec.unit,
        "trigger": {
            "kind": spec.trigger.kind.value,
            "unit": spec.trigger.unit,
            "to_tier": spec.trigger.to_tier,
            "segment": spec.trigger.segment,
            "days": spec.trigger.days,
            **({"reasons": list(spec.trigger.reasons)} if spec.trigger.reasons else {}),
            **(
                {"schedule": _schedule_document(spec.trigger.schedule)}
                if spec.trigger.schedule
                else {}
            ),
        },
        "conditions": {
            "units": list(spec.conditions.units),
            "tiers": list(spec.conditions.tiers),
            "consents": list(spec.conditions.consents),
            **(
                {
                    "held_badges": list(spec.conditions.held_badges),
                    "lacking_badges": list(spec.conditions.lacking_badges),
                }
                if spec.conditions.needs_badges
                else {}
            ),
        },
        "steps": [_step_document(s) for s in spec.steps],
        "frequency_cap": {
            "max_entries": spec.frequency_cap.max_entries,
            "period_days": spec.frequency_cap.period_days,
        },
        "control_share": spec.control_share,
        "start_at": _when(spec.start_at),
        "end_at": _when(spec.end_at),
        "time_zone": spec.time_zone,
        "quiet_hours": _window_document(spec.quiet_hours),
        "budget": {"points": spec.budget.points, "coupons": spec.budget.coupons},
    }


def _schedule_document(schedule: Schedule) -> dict[str, Any]:
    return {
        "at": schedule.at.strftime("%H:%M") if schedule.at else None,
        "weekdays": list(schedule.weekdays),
        "once_at": _when(schedule.once_at),
    }


def _schedule_of(doc: dict[str, Any] | None) -> Schedule | None:
    if doc is None:
        return None
    return Schedule(
        time.fromisoformat(doc["at"]) if doc.get("at") else None,
        tuple(doc.get("weekdays", ())),
        _time(doc.get("once_at")),
    )


def _window_document(window: DailyWindow | None) -> list[str] | None:
    if window is None:
        return None
    return [window.start.strftime("%H:%M"), window.end.strftime("%H:%M")]


def _window_of(doc: list[str] | None) -> DailyWindow | None:
    if not doc:
        return None
    return DailyWindow(time.fromisoformat(doc[0]), time.fromisoformat(doc[1]))


def _step_document(step: Step) -> dict[str, Any]:
    match step:
        case IssueCoupon():
            issue = {"template": step.template, "unit": step.unit}
            if step.grant_key:
                issue["grant_key"] = step.grant_key
            return {"issue_coupon": issue}
        case AwardPoints():
            return {
                "award_points": {
                    "points": step.points,
                    "funding_unit": step.funding_unit,
                    "reason": step.reason,
                }
            }
        case ChangeTags():
            return {"change_tags": {"add": list(step.add), "remove": list(step.remove)}}
        case SendMessage():
            return {
                "send_message": {
                    "purpose": step.purpose,
                    "body": step.body,
                    "channel": step.channel,
                }
            }
        case Delay():
            return {"delay": {"seconds": step.seconds}}
        case Window():
            return {"window": _window_document(step.window)}
        case UntilPurchase():
            return {
                "until_purchase": {
                    "days": step.days,
                    "exit_on_purchase": step.exit_on_purchase,
                }
            }
    raise TypeError(step)


def _step_of(doc: dict[str, Any]) -> Step:
    if "delay" in doc:
        return Delay(**doc["delay"])
    if "window" in doc:
        window = _window_of(doc["window"])
        assert window is not None
        return Window(window)
    if "until_purchase" in doc:
        return UntilPurchase(**doc["until_purchase"])
    if "issue_coupon" in doc:
        return IssueCoupon(**doc["issue_coupon"])
    if "award_points" in doc:
        return AwardPoints(**doc["award_points"])
    if "change_tags" in doc:
        tags = doc["change_tags"]
        return ChangeTags(tuple(tags["add"]), tuple(tags["remove"]))
    return SendMessage(**doc["send_message"])


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def spec_of(doc: dict[str, Any]) -> JourneySpec:
    trigger = doc["trigger"]
    conditions = doc["conditions"]
    return JourneySpec(
        display_name=doc["display_name"],
        unit=doc["unit"],
        trigger=Trigger(
            TriggerKind(trigger["kind"]),
            trigger["unit"],
            trigger["to_tier"],
            trigger["segment"],
            trigger.get("days", 0),
            tuple(trigger.get("reasons", ())),
            _schedule_of(trigger.get("schedule")),
        ),
        steps=tuple(_step_of(s) for s in doc["steps"]),
        conditions=Conditions(
            tuple(conditions["units"]),
            tuple(conditions["tiers"]),
            tuple(conditions["consents"]),
            tuple(conditions.get("held_badges", ())),
            tuple(conditions.get("lacking_badges", ())),
        ),
        frequency_cap=FrequencyCap(**doc["frequency_cap"]),
        control_share=float(doc["control_share"]),
        start_at=_time(doc["start_at"]),
        end_at=_time(doc["end_at"]),
        time_zone=doc.get("time_zone", ""),
        quiet_hours=_window_of(doc.get("quiet_hours")),
        budget=Budget(**doc.get("budget", {})),
    )


_JOURNEY_COLUMNS = (
    journeys.c.journey_id,
    journeys.c.unit,
    journeys.c.state,
    journeys.c.version,
    journey_versions.c.spec,
    journeys.c.created_at,
    journeys.c.updated_at,
    journeys.c.key,
)
_HEADS = journeys.join(
    journey_versions,
    and_(
        journey_versions.c.journey_id == journeys.c.journey_id,
        journey_versions.c.version == journeys.c.version,
    ),
)


def _journey(row: Any) -> StoredJourney:
    return StoredJourney(
        row.journey_id,
        row.unit,
        JourneyState(row.state),
        row.version,
        spec_of(row.spec),
        row.created_at,
        row.updated_at,
        row.key or "",
    )


def _entry(row: Any) -> StoredEntry:
    return StoredEntry(
        row.entry_id,
        row.journey_id,
        row.version,
        row.member_id,
        row.trigger_key,
        row.unit,
        EntryState(row.state),
        row.entered_at,
        row.next_step,
        row.waiting,
        row.purchased_at,
        row.due_at,
    )


class JourneyStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- journeys ---------------------------------------------------------------------------

    async def add(
        self,
        journey_id: str,
        spec: JourneySpec,
        state: JourneyState,
        now: datetime,
        key: str = "",
    ) -> bool:
        """Add a journey; False (nothing added) when another journey has its key."""
        added = await self.session.execute(
            insert(journeys)
            .values(
                journey_id=journey_id,
                unit=spec.unit,
                state=state.value,
                version=1,
                trigger_kind=spec.trigger.kind.value,
                created_at=now,
                updated_at=now,
                key=key or None,
            )
            .on_conflict_do_nothing()
            .returning(journeys.c.journey_id)
        )
        if added.first() is None:
            return False
        await self._add_version(journey_id, 1, spec, now)
        return True

    async def set_key(self, journey_id: str, key: str) -> bool:
        """Give a journey without a key `key`; False when another journey has it."""
        taken = await self.by_key(key)
        if taken is not None:
            return taken.journey_id == journey_id
        await self.session.execute(
            update(journeys).where(journeys.c.journey_id == journey_id).values(key=key)
        )
        return True

    async def by_key(self, key: str) -> StoredJourney | None:
        row = (
            await self.session.execute(
                select(*_JOURNEY_COLUMNS).select_from(_HEADS).where(journeys.c.key == key)
            )
        ).first()
        return _journey(row) if row else None

    async def _add_version(
        self, journey_id: str, version: int, spec: JourneySpec, now: datetime
    ) -> None:
        await self.session.execute(
            journey_versions.insert().values(
                journey_id=journey_id, version=version, spec=spec_document(spec), created_at=now
            )
        )

    async def new_version(self, journey: StoredJourney, spec: JourneySpec, now: datetime) -> int:
        version = journey.version + 1
        await self._add_version(journey.journey_id, version, spec, now)
        await self.session.execute(
            update(journeys)
            .where(journeys.c.journey_id == journey.journey_id)
            .values(version=version, trigger_kind=spec.trigger.kind.value, updated_at=now)
        )
        return version

    async def set_state(self, journey_id: str, state: JourneyState, now: datetime) -> None:
        await self.session.execute(
            update(journeys)
            .where(journeys.c.journey_id == journey_id)
            .values(state=state.value, updated_at=now)
        )

    async def get(self, journey_id: str, *, for_update: bool = False) -> StoredJourney | None:
        query = (
            select(*_JOURNEY_COLUMNS).select_from(_HEADS).where(journeys.c.journey_id == journey_id)
        )
        if for_update:
            query = query.with_for_update(of=journeys)
        row = (await self.session.execute(query)).first()
        return _journey(row) if row else None

    async def spec_at(self, journey_id: str, version: int) -> JourneySpec:
        doc = (
            await self.session.execute(
                select(journey_versions.c.spec).where(
                    journey_versions.c.journey_id == journey_id,
                    journey_versions.c.version == version,
                )
            )
        ).scalar_one()
        return spec_of(doc)

    async def page(self, unit: str | None, after: str, limit: int) -> list[StoredJourney]:
        query = select(*_JOURNEY_COLUMNS).select_from(_HEADS).where(journeys.c.journey_id > after)
        if unit is not None:
            query = query.where(journeys.c.unit == unit)
        rows = await self.session.execute(query.order_by(journeys.c.journey_id).limit(limit))
        return [_journey(r) for r in rows]

    async def triggered_by(self, kinds: Sequence[TriggerKind]) -> list[StoredJourney]:
        """Active and paused journeys (latest versions) whose trigger is one of `kinds`, share
        locked to the end of the transaction: a pause, resume or edit waits for the entries
        being made (a resume then finds every entry kept while paused), and entries wait for
        it (they see the state it committed)."""
        rows = await self.session.execute(
            select(*_JOURNEY_COLUMNS)
            .select_from(_HEADS)
            .where(
                journeys.c.trigger_kind.in_([k.value for k in kinds]),
                journeys.c.state.in_([JourneyState.ACTIVE.value, JourneyState.PAUSED.value]),
            )
            .with_for_update(read=True, of=journeys)
        )
        return [_journey(r) for r in rows]

    # --- entries ------------------------------------------------------------------------------

    async def enter(self, entry: StoredEntry) -> bool:
        """Record the entry; False when it was recorded before (the same event again)."""
        inserted = await self.session.execute(
            insert(journey_entries)
            .values(
                entry_id=entry.entry_id,
                journey_id=entry.journey_id,
                version=entry.version,
                member_id=entry.member_id,
                trigger_key=entry.trigger_key,
                unit=entry.unit,
                state=entry.state.value,
                entered_at=entry.entered_at,
                updated_at=entry.entered_at,
            )
            .on_conflict_do_nothing()
            .returning(journey_entries.c.entry_id)
        )
        return inserted.first() is not None

    async def enter_many(self, entries: Sequence[StoredEntry]) -> set[str]:
        """Record entries in one statement; the IDs of those not recorded before."""
        if not entries:
            return set()
        rows = await self.session.execute(
            text(
                "INSERT INTO journey_entries (entry_id, journey_id, version, member_id,"
                " trigger_key, unit, state, entered_at, updated_at)"
                " SELECT e.entry_id, e.journey_id, e.version, e.member_id, e.trigger_key, e.unit,"
                " e.state, e.entered_at, e.entered_at"
                " FROM unnest(CAST(:ids AS text[]), CAST(:journeys AS text[]),"
                " CAST(:versions AS int[]), CAST(:members AS text[]), CAST(:keys AS text[]),"
                " CAST(:units AS text[]), CAST(:states AS text[]), CAST(:at AS timestamptz[]))"
                " AS e(entry_id, journey_id, version, member_id, trigger_key, unit, state,"
                " entered_at)"
                " ON CONFLICT DO NOTHING RETURNING entry_id"
            ),
            {
                "ids": [e.entry_id for e in entries],
                "journeys": [e.journey_id for e in entries],
                "versions": [e.version for e in entries],
                "members": [e.member_id for e in entries],
                "keys": [e.trigger_key for e in entries],
                "units": [e.unit for e in entries],
                "states": [e.state.value for e in entries],
                "at": [e.entered_at for e in entries],
            },
        )
        return {r[0] for r in rows}

    async def recorded(self, entry_ids: Sequence[str]) -> set[str]:
        """Which of these entries are recorded (committed, or by this transaction)."""
        if not entry_ids:
            return set()
        rows = await self.session.execute(
            select(journey_entries.c.entry_id).where(
                journey_entries.c.entry_id == func.any(list(entry_ids))
            )
        )
        return {r[0] for r in rows}

    async def set_entry_states(
        self, states: Sequence[tuple[str, EntryState]], now: datetime
    ) -> None:
        """Several entries' states in one statement."""
        if not states:
            return
        await self.session.execute(
            text(
                "UPDATE journey_entries AS e SET state = s.state, updated_at = :now"
                " FROM unnest(CAST(:ids AS text[]), CAST(:states AS text[])) AS s(entry_id, state)"
                " WHERE e.entry_id = s.entry_id"
            ),
            {"ids": [i for i, _ in states], "states": [s.value for _, s in states], "now": now},
        )

    async def record_steps(self, runs: Sequence[StepRun], now: datetime) -> None:
        """Step runs of entries recorded in this transaction (no one else can have claimed
        them: a concurrent handler of the same event waits on the entry, then finds it)."""
        if not runs:
            return
        await self.session.execute(
            text(
                "INSERT INTO step_runs (entry_id, step, outcome, detail, ran_at)"
                " SELECT r.entry_id, r.step, r.outcome, r.detail, :now"
                " FROM unnest(CAST(:ids AS text[]), CAST(:steps AS int[]),"
                " CAST(:outcomes AS text[]), CAST(:details AS text[]))"
                " AS r(entry_id, step, outcome, detail)"
            ),
            {
                "ids": [r.entry_id for r in runs],
                "steps": [r.step for r in runs],
                "outcomes": [r.outcome for r in runs],
                "details": [r.detail for r in runs],
                "now": now,
            },
        )

    async def lock_member(self, journey_id: str, member_id: str) -> None:
        """Serialise the entries of one member into one journey (the frequency cap counts
        them), across replicas, to the end of the transaction."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"journey-entry:{journey_id}:{member_id}"},
        )

    async def lock_members(self, journey_id: str, member_ids: Sequence[str]) -> None:
        """`lock_member` for several members, in one order (no two batches wait on each
        other in a circle)."""
        keys = sorted({f"journey-entry:{journey_id}:{m}" for m in member_ids})
        if keys:
            await self.session.execute(
                text(
                    "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))"
                    " FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS s"
                ),
                {"keys": keys},
            )

    async def entered_since(
        self, journey_id: str, member_ids: Sequence[str], since: datetime
    ) -> dict[str, list[datetime]]:
        """`entered_at` for several members (every recorded entry of theirs)."""
        rows = await self.session.execute(
            select(journey_entries.c.member_id, journey_entries.c.entered_at).where(
                journey_entries.c.journey_id == journey_id,
                journey_entries.c.member_id == func.any(list(member_ids)),
                journey_entries.c.entered_at > since,
                journey_entries.c.state.notin_([EntryState.CAPPED.value, EntryState.SKIPPED.value]),
            )
        )
        found: dict[str, list[datetime]] = {}
        for row in rows:
            found.setdefault(row.member_id, []).append(row.entered_at)
        return found

    async def entered_at(
        self, journey_id: str, member_id: str, since: datetime, but: str
    ) -> list[datetime]:
        """When the member's counted entries into the journey (but entry `but`) were made since
        `since` (capped and skipped entries do not count)."""
        rows = await self.session.execute(
            select(journey_entries.c.entered_at).where(
                journey_entries.c.journey_id == journey_id,
                journey_entries.c.member_id == member_id,
                journey_entries.c.entered_at > since,
                journey_entries.c.entry_id != but,
                journey_entries.c.state.notin_([EntryState.CAPPED.value, EntryState.SKIPPED.value]),
            )
        )
        return [r.entered_at for r in rows]

    async def set_entry_state(self, entry_id: str, state: EntryState, now: datetime) -> None:
        await self.session.execute(
            update(journey_entries)
            .where(journey_entries.c.entry_id == entry_id)
            .values(state=state.value, updated_at=now)
        )

    async def pending(self, journey_id: str, limit: int) -> list[StoredEntry]:
        """The oldest pending entries of a journey, locked (another replica's resume skips
        them)."""
        rows = await self.session.execute(
            select(journey_entries)
            .where(
                journey_entries.c.journey_id == journey_id,
                journey_entries.c.state == EntryState.PENDING.value,
            )
            .order_by(journey_entries.c.entered_at, journey_entries.c.entry_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_entry(r) for r in rows]

    async def entries(
        self, journey_id: str, before: tuple[datetime, str] | None, limit: int
    ) -> list[StoredEntry]:
        query = select(journey_entries).where(journey_entries.c.journey_id == journey_id)
        if before is not None:
            query = query.where(
                tuple_(journey_entries.c.entered_at, journey_entries.c.entry_id) < tuple_(*before)
            )
        rows = await self.session.execute(
            query.order_by(
                journey_entries.c.entered_at.desc(), journey_entries.c.entry_id.desc()
            ).limit(limit)
        )
        return [_entry(r) for r in rows]

    # --- step runs ----------------------------------------------------------------------------

    async def claim_step(self, entry_id: str, step: int, now: datetime) -> bool:
        """Take the step for this transaction; False when it ran in a committed one before."""
        inserted = await self.session.execute(
            insert(step_runs)
            .values(entry_id=entry_id, step=step, outcome="running", detail="", ran_at=now)
            .on_conflict_do_nothing()
            .returning(step_runs.c.step)
        )
        return inserted.first() is not None

    async def finish_step(self, entry_id: str, step: int, outcome: str, detail: str) -> None:
        await self.session.execute(
            update(step_runs)
            .where(step_runs.c.entry_id == entry_id, step_runs.c.step == step)
            .values(outcome=outcome, detail=detail)
        )

    async def step_runs(self, entry_ids: Sequence[str]) -> list[StepRun]:
        if not entry_ids:
            return []
        rows = await self.session.execute(
            select(step_runs)
            .where(step_runs.c.entry_id.in_(list(entry_ids)))
            .order_by(step_runs.c.entry_id, step_runs.c.step)
        )
        return [StepRun(r.entry_id, r.step, r.outcome, r.detail) for r in rows]

    # --- messages (the development sink) ------------------------------------------------------

    async def add_message(self, message: StoredMessage, entry_id: str, step: int) -> None:
        await self.session.execute(
            insert(messages)
            .values(
                message_id=message.message_id,
                entry_id=entry_id,
                step=step,
                journey_id=message.journey_id,
                member_id=message.member_id,
                channel=message.channel,
                purpose=message.purpose,
                body=message.body,
                unsubscribe_token=message.unsubscribe_token,
                sent_at=message.sent_at,
            )
            .on_conflict_do_nothing()
        )

    async def messages(
        self, member_id: str, units: str | None, before: tuple[datetime, str] | None, limit: int
    ) -> list[StoredMessage]:
        query = select(messages)
        if member_id:
            query = query.where(messages.c.member_id == member_id)
        if units is not None:
            query = query.where(
                messages.c.journey_id.in_(
                    select(journeys.c.journey_id).where(journeys.c.unit == units)
                )
            )
        if before is not None:
            query = query.where(
                or_(
                    messages.c.sent_at < before[0],
                    and_(messages.c.sent_at == before[0], messages.c.message_id < before[1]),
                )
            )
        rows = await self.session.execute(
            query.order_by(messages.c.sent_at.desc(), messages.c.message_id.desc()).limit(limit)
        )
        return [
            StoredMessage(
                r.message_id,
                r.member_id,
                r.journey_id,
                r.channel,
                r.purpose,
                r.body,
                r.unsubscribe_token,
                r.sent_at,
            )
            for r in rows
        ]

    async def forget(self, member_id: str) -> None:
        """An erased member: the messages sent and the tier kept go (entries stay, by member ID
        only, for the journeys' figures)."""
        await self.session.execute(delete(messages).where(messages.c.member_id == member_id))
        await self.session.execute(
            delete(member_tiers).where(member_tiers.c.member_id == member_id)
        )

    # --- members' tiers -----------------------------------------------------------------------

    async def set_tier(self, member_id: str, tier: str, effective_at: datetime) -> None:
        """The member's tier, unless a later change is known already (events may arrive late)."""
        statement = insert(member_tiers).values(
            member_id=member_id, tier=tier, effective_at=effective_at
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[member_tiers.c.member_id],
                set_={
                    "tier": statement.excluded.tier,
                    "effective_at": statement.excluded.effective_at,
                },
                where=member_tiers.c.effective_at <= statement.excluded.effective_at,
            )
        )

    async def tier(self, member_id: str) -> str:
        found = (
            await self.session.execute(
                select(member_tiers.c.tier).where(member_tiers.c.member_id == member_id)
            )
        ).scalar()
        return str(found or "")

    async def count_entries(self, journey_id: str) -> int:
        return int(
            (
                await self.session.execute(
                    select(func.count()).where(journey_entries.c.journey_id == journey_id)
                )
            ).scalar_one()
        )
