"""Dynamic segments as use cases: create, read, change and delete a segment, and keep its
members up to date: in full when it is created or its rule changes and on a schedule, and for
the members whose figures changed as they change (`SegmentEvaluator`). Every member who enters
or leaves is a `SegmentEntered` / `SegmentLeft` event in the same transaction (the outbox).

Each segment is evaluated under a lock of its row, so a change of rule, the schedule and the
incremental evaluation never interleave on one segment: an entry or exit is found (and
published) once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from loyalty_kit.clock import Clock
from loyalty_kit.errors import Aborted, FieldViolation, InvalidArgument, NotFound
from loyalty_kit.logs import get_logger

from loyalty_insights.adapters.segments import Changes, StoredSegment, segment_events
from loyalty_insights.domain.segments import (
    Rule,
    compile_rule,
    membership_rule,
    violations_of,
)
from loyalty_insights.service_layer.uow import InsightsUnitOfWork

log = get_logger("loyalty.insights.segments")

UowFactory = Callable[..., InsightsUnitOfWork]
MAX_DISPLAY_NAME = 200
EVALUATOR = "segments"
# Figures recomputed this long before the watermark are read again: a transaction that took
# its `updated_at` earlier but committed after a later one is still seen (re-evaluating a
# member is idempotent). Longer ones are caught by the scheduled full evaluation.
OVERLAP = timedelta(seconds=5)
CHUNK = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Draft:
    """A segment as a request describes it (the rule checked by `check`)."""

    display_name: str
    rule: Rule
    targeting: bool


class SegmentNotFound(NotFound):
    reason = "SEGMENT_NOT_FOUND"

    def __init__(self, segment_id: str) -> None:
        super().__init__(f"no segment {segment_id}", metadata={"segment_id": segment_id})


class EtagMismatch(Aborted):
    reason = "ETAG_MISMATCH"

    def __init__(self, segment_id: str) -> None:
        super().__init__(
            f"segment {segment_id} changed since it was read; read it again",
            metadata={"segment_id": segment_id},
        )


def etag_of(segment: StoredSegment) -> str:
    return f'"{segment.version}"'


def check(draft: Draft, path: str, *, fields: frozenset[str] | None = None) -> None:
    """INVALID_ARGUMENT with a violation per problem (paths below `path`, e.g.
    `segment.rule.all.rules[1].condition.value`), of the fields given (None: all)."""
    problems: list[FieldViolation] = []
    if fields is None or "display_name" in fields:
        name = draft.display_name.strip()
        if not name:
            problems.append(FieldViolation(f"{path}.display_name", "required"))
        elif len(name) > MAX_DISPLAY_NAME:
            problems.append(
                FieldViolation(f"{path}.display_name", f"at most {MAX_DISPLAY_NAME} characters")
            )
    if fields is None or "rule" in fields:
        problems.extend(
            FieldViolation(v.path, v.description) for v in violations_of(draft.rule, f"{path}.rule")
        )
    if problems:
        raise InvalidArgument.of(problems)


async def _evaluate(
    uow: InsightsUnitOfWork,
    segment: StoredSegment,
    now: datetime,
    reason: str,
    members: list[str] | None = None,
) -> Changes:
    """Evaluate the segment (all members, or those given) and write the events."""
    rule = membership_rule(segment.rule, targeting=segment.targeting)
    changes = await uow.segments.evaluate(segment.segment_id, compile_rule(rule, now), members)
    await uow.outbox.add_many(segment_events(segment.segment_id, changes, reason, now))
    if members is None:  # counted whole, after a full evaluation
        await uow.segments.set_count(segment.segment_id, evaluated_at=now)
    elif changes.entered or changes.left:  # moved by the difference (the row is locked)
        await uow.segments.add_to_count(
            segment.segment_id, len(changes.entered) - len(changes.left)
        )
    return changes


async def create(
    uow: InsightsUnitOfWork, draft: Draft, unit: str, now: datetime, *, validate_only: bool
) -> StoredSegment:
    """A new segment of `unit` (the caller's; "group" for the group's team), its members
    evaluated at once. With `validate_only` the members are counted and nothing is stored."""
    check(draft, "segment")
    segment = StoredSegment(
        segment_id=str(uuid.uuid4()),
        display_name=draft.display_name.strip(),
        rule=draft.rule,
        targeting=draft.targeting,
        unit=unit,
        member_count=0,
        version=1,
        created_at=now,
        updated_at=now,
        evaluated_at=now,
    )
    if validate_only:
        rule = membership_rule(draft.rule, targeting=draft.targeting)
        count = await uow.segments.count(compile_rule(rule, now))
        return replace(segment, segment_id="", member_count=count)
    await uow.segments.add(segment)
    await _evaluate(uow, segment, now, "created")
    return await get(uow, segment.segment_id)


async def get(uow: InsightsUnitOfWork, segment_id: str) -> StoredSegment:
    found = await uow.segments.get(segment_id)
    if found is None:
        raise SegmentNotFound(segment_id)
    return found


async def of_member(
    uow: InsightsUnitOfWork, member_id: str, unit: str | None, after: str, limit: int
) -> list[StoredSegment]:
    """A page of the segments the member is in now (a unit's only, when `unit` is given)."""
    return await uow.segments.of_member(member_id, unit, after, limit)


async def update(
    uow: InsightsUnitOfWork,
    segment_id: str,
    draft: Draft,
    fields: frozenset[str],
    etag: str,
    now: datetime,
    may_change: Callable[[StoredSegment], None],
) -> StoredSegment:
    """Change the fields named (display_name, rule, targeting); a new rule or targeting
    re-evaluates the members. `etag` (if given) must be the current one."""
    current = await _locked_for_change(uow, segment_id, etag, may_change)
    check(draft, "segment", fields=fields)
    changed = replace(
        current,
        display_name=draft.display_name.strip()
        if "display_name" in fields
        else current.display_name,
        rule=draft.rule if "rule" in fields else current.rule,
        targeting=draft.targeting if "targeting" in fields else current.targeting,
        version=current.version + 1,
        updated_at=now,
    )
    await uow.segments.save(changed)
    if changed.rule != current.rule or changed.targeting != current.targeting:
        await _evaluate(uow, changed, now, "updated")
    return await get(uow, segment_id)


async def _locked_for_change(
    uow: InsightsUnitOfWork,
    segment_id: str,
    etag: str,
    may_change: Callable[[StoredSegment], None],
) -> StoredSegment:
    """The segment, locked, once the caller may change it and `etag` (if given) is current."""
    current = await uow.segments.get(segment_id, for_update=True)
    if current is None:
        raise SegmentNotFound(segment_id)
    may_change(current)
    if etag and etag != etag_of(current):
        raise EtagMismatch(segment_id)
    return current


async def delete(
    uow: InsightsUnitOfWork,
    segment_id: str,
    etag: str,
    now: datetime,
    may_change: Callable[[StoredSegment], None],
) -> None:
    """Delete the segment; each member leaves it (reason "deleted")."""
    await _locked_for_change(uow, segment_id, etag, may_change)
    members = await uow.segments.delete(segment_id)
    await uow.outbox.add_many(segment_events(segment_id, Changes([], members), "deleted", now))


async def evaluate_all(uow_factory: UowFactory, clock: Clock) -> int:
    """The scheduled full evaluation: every segment in its own transaction (members whose
    figures changed without the incremental evaluation seeing them, time passing a rule's
    `within N days`, birthdays' months). How many members entered or left."""
    async with uow_factory(read_only=True) as uow:
        segment_ids = await uow.segments.all_ids()
    moved = 0
    for segment_id in segment_ids:
        async with uow_factory() as uow:
            segment = await uow.segments.get(segment_id, for_update=True)
            if segment is None:
                continue
            changes = await _evaluate(uow, segment, clock(), "evaluated")
            await uow.commit()
        moved += len(changes.entered) + len(changes.left)
    return moved


async def evaluate_changed(uow_factory: UowFactory, clock: Clock) -> int:
    """One round of the incremental evaluation: the members whose figures were recomputed
    since the watermark (less the overlap), and members erased or absorbed, evaluated against
    every segment, a chunk at a time; then the watermark moves to the newest figures read. How
    many members were evaluated."""
    async with uow_factory(read_only=True) as uow:
        watermark = await uow.segments.watermark(EVALUATOR)
        gone = await uow.segments.gone_members()
    # No watermark yet: every member's figures once (as a full evaluation would).
    since = watermark - OVERLAP if watermark is not None else EPOCH
    evaluated = 0
    if gone:
        await _evaluate_members(uow_factory, clock, gone)
        evaluated += len(gone)
    after: tuple[datetime, str] | None = None
    while True:
        async with uow_factory(read_only=True) as uow:
            changed = await uow.segments.changed_figures(since, after, CHUNK)
        if not changed:
            break
        await _evaluate_members(uow_factory, clock, [m for _, m in changed], changed[-1][0])
        evaluated += len(changed)
        after = changed[-1]
        if len(changed) < CHUNK:
            break
    return evaluated


async def _evaluate_members(
    uow_factory: UowFactory, clock: Clock, members: list[str], read_to: datetime | None = None
) -> None:
    """The members against every segment, and the watermark moved to `read_to`, in one
    transaction."""
    async with uow_factory() as uow:
        for segment_id in await uow.segments.all_ids():
            segment = await uow.segments.get(segment_id, for_update=True)
            if segment is not None:
                await _evaluate(uow, segment, clock(), "figures", members)
        if read_to is not None:
            await uow.segments.set_watermark(EVALUATOR, read_to)
        await uow.commit()
