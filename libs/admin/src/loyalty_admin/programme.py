"""Applying a programme file to the running services, and exporting the live programme.

A plan compares each section of the file with what its service holds now (their canonical
forms, see `messages`) and has a step only for the sections that differ, so applying the same
file twice changes nothing the second time, and `export` followed by `apply` is a no-op.

The points programme is versioned by the time it takes effect: a change never starts in the
past (the service refuses), so the file's `effective_from` counts only while it is ahead (or
for the very first version, which may start in the past for receipts replayed under it); a
change in a file whose `effective_from` has passed takes effect now, and the plan says so.
`--effective-from` sets the time for the change instead.

The steps run in dependency order (points, tiers, benefits, reward stock, journeys), each
one RPC of its service (journeys: one or two per journey that differs, see
`Planner._journeys`). Everything a service could refuse offline was checked before the first
one (the file as a whole, see `document`); if a step still fails, the ones before it stay
applied, the failure is reported with the steps left, and running apply again finishes the
job (the applied sections are then found unchanged).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import yaml
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.engagement.v1 import challenges_pb2
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import programme_pb2
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb

from loyalty_admin.document import ProgrammeFile
from loyalty_admin.live import Live, Services, explain
from loyalty_admin.messages import (
    CHALLENGES,
    JOURNEYS,
    SECTION,
    SECTIONS,
    STOCK,
    canonical,
    changes,
    plain,
)


@dataclass
class Step:
    """What applying does to one section: `changes` empty when it is unchanged."""

    section: str
    service: str
    live_version: int
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run: Callable[[], Awaitable[str]] | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def heading(self) -> str:
        version = f", v{self.live_version}" if self.live_version else ""
        state = f"{len(self.changes)} change(s)" if self.changes else "unchanged"
        return f"{self.section} ({self.service} service{version}): {state}"


class PlanRefused(Exception):
    """The file cannot be applied to the live programme as it stands (nothing was changed)."""


@dataclass
class Outcome:
    """What an apply did, step by step (`done` said what each applied step stored)."""

    done: dict[str, str] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    failed: str = ""
    failure: str = ""
    left: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def _digest(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_effective_from(programme: programme_pb2.Programme) -> programme_pb2.Programme:
    copy = programme_pb2.Programme()
    copy.CopyFrom(programme)
    copy.ClearField("effective_from")
    return copy


class Planner:
    """The steps that make the live programme a file's. Without `services` the plan is for
    reading only (a review): its steps' `run` needs them."""

    def __init__(
        self,
        services: Services | None,
        live: Live,
        *,
        now: datetime,
        effective_from: datetime | None = None,
        reason: str = "",
    ) -> None:
        self.services = services
        self.live = live
        self.now = now
        self.effective_from = effective_from
        self.reason = reason

    @property
    def calls(self) -> Services:
        if self.services is None:
            raise PlanRefused("this plan was made for reading only: it has no services to call")
        return self.services

    def plan(self, file: ProgrammeFile) -> list[Step]:
        steps = []
        if file.points is not None:
            steps.append(self._points(file.points))
        if file.tiers is not None:
            steps.append(self._document("tiers", file.tiers, self.live.tiers))
        if file.benefits is not None:
            steps.append(self._document("benefits", file.benefits, self.live.benefits))
        if file.reward_stock is not None:
            steps.append(self._stock(file, file.reward_stock))
        if file.journeys is not None:
            steps.append(self._journeys(file.journeys))
        if file.challenges is not None:
            steps.append(self._challenges(file.challenges))
        return steps

    def _challenges(self, wanted: list[challenges_pb2.Challenge]) -> Step:
        """The file's challenges, found by key (one without a key whose unit and display name
        are the file's, made before the file named it, counts as it): the missing ones
        created. A challenge is never changed (the service keeps no versions of one, and
        members' progress counts toward it as it is): a changed one is refused."""
        step = Step(CHALLENGES, "engagement", 0)
        live = self.live.challenges or []
        keyed = {c.key: c for c in live if c.key}
        unkeyed = {(c.unit, c.display_name): c for c in live if not c.key}
        before: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []
        missing: list[challenges_pb2.Challenge] = []
        for challenge in wanted:
            unit = challenge.unit or "group"
            current = keyed.get(challenge.key) or unkeyed.pop((unit, challenge.display_name), None)
            after.append(canonical(challenge))
            if current is None:
                missing.append(challenge)
                continue
            seen = engagement_copy(current)
            seen.ClearField("name")
            seen.key = challenge.key
            if not challenge.HasField("start_time"):
                seen.ClearField("start_time")  # its creation: the file left it to the service
            before.append(canonical(seen))
            differs = changes(
                canonical(seen), canonical(challenge), f"{CHALLENGES}[{challenge.key}]"
            )
            if differs:
                raise PlanRefused(
                    f"{differs[0].lstrip('~+- ')}: a challenge is never changed (members' "
                    "progress counts toward it as it is); give the changed one a new key"
                )
        step.changes = changes(before, after, CHALLENGES)
        if not step.changes:
            return step

        async def run() -> str:
            stub, metadata = self.calls.challenges, self.calls.metadata
            for challenge in missing:
                request_id = (
                    f"programme-apply-challenge-{challenge.key}-{_digest(canonical(challenge))}"
                )
                await stub.CreateChallenge(
                    challenges_pb2.CreateChallengeRequest(
                        challenge=challenge, request_id=request_id
                    ),
                    metadata=metadata,
                )
            return f"created {len(missing)}"

        step.run = run
        return step

    def _journeys(self, wanted: list[engagement_pb.Journey]) -> Step:
        """The file's journeys, found by key: the missing ones created (a journey without a
        key whose display name is the file's, made before the file named it, is given the key),
        the changed ones updated (a new version: running entries keep theirs), and the state
        set with PauseJourney / ResumeJourney. Journeys the file does not name are left
        alone."""
        step = Step(JOURNEYS, "engagement", 0)
        live = self.live.journeys or []
        keyed = {j.key: j for j in live if j.key}
        unkeyed = {j.display_name: j for j in live if not j.key}
        before: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []
        calls: list[Callable[[], Awaitable[None]]] = []
        for journey in wanted:
            current = keyed.get(journey.key)
            adopted = current is None and journey.display_name in unkeyed
            if adopted:
                current = unkeyed.pop(journey.display_name)
            if current is not None:
                seen = canonical(current)
                if adopted:
                    seen["key"] = journey.key
                if current.state == engagement_pb.JOURNEY_STATE_ENDED:
                    # Past its end_time: whatever state it keeps, nothing enters; a pause or
                    # resume would change nothing, a later end_time in the file opens it again.
                    seen["state"] = canonical(journey).get("state", "")
                    step.notes.append(f"{JOURNEYS}[{journey.key}] has ended (its end_time)")
                before.append(seen)
            after.append(canonical(journey))
            calls.extend(self._journey_calls(journey, current, adopted))
        step.changes = changes(before, after, JOURNEYS)
        if not step.changes:
            return step

        async def run() -> str:
            for call in calls:
                await call()
            return f"{len(calls)} call(s)"

        step.run = run
        return step

    def _journey_calls(
        self,
        wanted: engagement_pb.Journey,
        current: engagement_pb.Journey | None,
        adopted: bool,
    ) -> list[Callable[[], Awaitable[None]]]:
        """The RPCs that make the live journey `current` (None: none yet) the file's."""
        key = wanted.key
        definition = engagement_pb.Journey()
        definition.CopyFrom(wanted)
        definition.ClearField("state")
        state = wanted.state or engagement_pb.JOURNEY_STATE_DRAFT
        if current is None:
            if state == engagement_pb.JOURNEY_STATE_PAUSED:
                raise PlanRefused(
                    f"{JOURNEYS}[{key}]: a new journey is created DRAFT or ACTIVE, not PAUSED"
                )
            definition.state = state
            request_id = f"programme-apply-journey-{key}-{_digest(canonical(definition))}"

            async def create() -> None:
                await self.calls.engagement.CreateJourney(
                    engagement_pb.CreateJourneyRequest(journey=definition, request_id=request_id),
                    metadata=self.calls.metadata,
                )

            return [create]
        calls: list[Callable[[], Awaitable[None]]] = []
        live_definition = engagement_pb.Journey()
        live_definition.CopyFrom(current)
        live_definition.ClearField("state")
        if canonical(live_definition).get("unit") != canonical(definition).get("unit"):
            raise PlanRefused(
                f"{JOURNEYS}[{key}]: the unit of a journey never changes "
                f"({current.unit} in the service)"
            )
        if adopted or canonical(live_definition) != canonical(definition):
            definition.name = current.name
            request_id = (
                f"programme-apply-journey-{key}-v{current.version}-{_digest(canonical(definition))}"
            )

            async def update() -> None:
                await self.calls.engagement.UpdateJourney(
                    engagement_pb.UpdateJourneyRequest(journey=definition, request_id=request_id),
                    metadata=self.calls.metadata,
                )

            calls.append(update)
        if state != current.state and current.state != engagement_pb.JOURNEY_STATE_ENDED:
            calls.append(self._state_call(key, current, state))
        return calls

    def _state_call(
        self, key: str, current: engagement_pb.Journey, state: int
    ) -> Callable[[], Awaitable[None]]:
        # Pausing and resuming are idempotent: a fresh id each time is safe.
        request_id = f"programme-apply-journey-{key}-state-{uuid.uuid4().hex}"
        if state == engagement_pb.JOURNEY_STATE_ACTIVE and current.state in (
            engagement_pb.JOURNEY_STATE_DRAFT,
            engagement_pb.JOURNEY_STATE_PAUSED,
        ):

            async def resume() -> None:
                await self.calls.engagement.ResumeJourney(
                    engagement_pb.ResumeJourneyRequest(name=current.name, request_id=request_id),
                    metadata=self.calls.metadata,
                )

            return resume
        if (
            state == engagement_pb.JOURNEY_STATE_PAUSED
            and current.state == engagement_pb.JOURNEY_STATE_ACTIVE
        ):

            async def pause() -> None:
                await self.calls.engagement.PauseJourney(
                    engagement_pb.PauseJourneyRequest(name=current.name, request_id=request_id),
                    metadata=self.calls.metadata,
                )

            return pause
        names = engagement_pb.JourneyState.Name
        raise PlanRefused(
            f"{JOURNEYS}[{key}]: a {names(current.state)} journey cannot become {names(state)}"  # type: ignore[arg-type]
        )

    def _points(self, wanted: programme_pb2.Programme) -> Step:
        live = self.live.points
        step = Step("points", "points", live.version if live is not None else 0)
        rules = _without_effective_from(wanted)
        before = canonical(_without_effective_from(live)) if live is not None else {}
        step.changes = changes(before, canonical(rules))
        if not step.changes:
            return step
        start: datetime | None = None
        if self.effective_from is not None:
            start = self.effective_from
            if live is not None and start < self.now:
                raise PlanRefused(
                    f"points: --effective-from {start.isoformat()} is in the past: a change to "
                    "the programme never rewrites history"
                )
        elif wanted.HasField("effective_from"):
            written = wanted.effective_from.ToDatetime(UTC)
            if live is None or written >= self.now:
                start = written
            else:
                step.notes.append(
                    f"the file's effective_from {wanted.effective_from.ToJsonString()} has "
                    "passed: the change takes effect when applied"
                )
        if start is not None:
            rules.effective_from.CopyFrom(_timestamp(start))
        step.notes.append(f"effective from {start.isoformat() if start else 'now'}")
        request_id = f"programme-apply-points-{_digest(before, canonical(rules), str(start))}"

        async def run() -> str:
            stored = await self.calls.points.UpdateProgramme(
                points_pb.UpdateProgrammeRequest(
                    programme=rules, reason=self.reason, request_id=request_id
                ),
                metadata=self.calls.metadata,
            )
            return f"published v{stored.programme.version}"

        step.run = run
        return step

    def _document(self, key: str, wanted: Message, live: Message | None) -> Step:
        section = SECTION[key]
        version = int(getattr(live, "version", 0)) if live is not None else 0
        step = Step(key, section.service, version)
        before = canonical(live) if live is not None else {}
        step.changes = changes(before, canonical(wanted))
        if not step.changes:
            return step
        request_id = f"programme-apply-{key}-{_digest(before, canonical(wanted))}"

        async def run() -> str:
            if key == "tiers":
                ladder = await self.calls.tiers.UpdateLadder(
                    tiers_pb.UpdateLadderRequest(
                        ladder=wanted,  # type: ignore[arg-type]
                        request_id=request_id,
                    ),
                    metadata=self.calls.metadata,
                )
                return f"published v{ladder.ladder.version}"
            catalogue = await self.calls.benefits.UpdateCatalogue(
                benefits_pb.UpdateCatalogueRequest(
                    catalogue=wanted,  # type: ignore[arg-type]
                    request_id=request_id,
                ),
                metadata=self.calls.metadata,
            )
            return f"published v{catalogue.catalogue.version}"

        step.run = run
        return step

    def _stock(self, file: ProgrammeFile, wanted: dict[str, int]) -> Step:
        step = Step(STOCK, "benefits", 0)
        rewards = (
            {r.code for r in file.benefits.rewards}
            if file.benefits is not None
            else set(self.live.stock)
        )
        unknown = sorted(set(wanted) - rewards)
        if unknown:
            raise PlanRefused(f"{STOCK}: no such reward in the catalogue: {', '.join(unknown)}")
        for code, level in wanted.items():
            have = self.live.stock.get(code, 0)
            if have < level:
                step.changes.append(
                    f"~ {STOCK}[{code}]: {have} -> {level} (restock +{level - have})"
                )
        if not step.changes:
            return step

        async def run() -> str:
            # The stock is read again: members may have bought some since the plan was made.
            have = await self.calls.stock()
            added = 0
            for code, level in wanted.items():
                short = level - have.get(code, 0)
                if short > 0:
                    await self.calls.benefits.RestockReward(
                        benefits_pb.RestockRewardRequest(
                            reward=code,
                            quantity=short,
                            # A fresh id each time: the same shortfall may come back after sales,
                            # and a replayed id would add nothing. A retry of this run reads
                            # the stock again first, so it never adds twice.
                            request_id=f"programme-apply-stock-{code}-{uuid.uuid4().hex}",
                        ),
                        metadata=self.calls.metadata,
                    )
                    added += 1
            return f"restocked {added} reward(s)"

        step.run = run
        return step


async def apply(steps: list[Step], say: Callable[[str], None] = print) -> Outcome:
    """Run the plan's steps in order, stopping at the first failure."""
    outcome = Outcome()
    pending = [step for step in steps if step.changed]
    for step in steps:
        if not step.changed:
            outcome.unchanged.append(step.section)
    for index, step in enumerate(pending):
        assert step.run is not None
        try:
            outcome.done[step.section] = await step.run()
        except grpc.aio.AioRpcError as error:
            outcome.failed = step.section
            outcome.failure = explain(error)
            outcome.left = [later.section for later in pending[index + 1 :]]
            return outcome
        say(f"{step.section}: {outcome.done[step.section]}")
    return outcome


def report(outcome: Outcome) -> list[str]:
    if outcome.ok:
        if not outcome.done:
            return ["no changes: the live programme is the file's"]
        applied = ", ".join(outcome.done)
        kept = f"; unchanged: {', '.join(outcome.unchanged)}" if outcome.unchanged else ""
        return [f"applied: {applied}{kept}"]
    lines = [f"FAILED at {outcome.failed}: {outcome.failure}"]
    if outcome.done:
        lines.append(f"applied before the failure (they stay): {', '.join(outcome.done)}")
    lines.append(f"not applied: {', '.join([outcome.failed, *outcome.left])}")
    lines.append("fix the cause and run apply again: it finishes what is left")
    return lines


def export(live: Live, now: datetime) -> dict[str, Any]:
    """The live programme as a file: what `apply` finds unchanged. A points programme already
    in force is written without its effective_from (a change to it takes effect when applied);
    one scheduled to start later keeps it."""
    document: dict[str, Any] = {}
    if live.points is not None:
        points = plain(live.points)
        if live.points.effective_from.ToDatetime(UTC) <= now:
            points.pop("effective_from", None)
        document["points"] = points
    if live.tiers is not None:
        document["tiers"] = plain(live.tiers)
    if live.benefits is not None:
        document["benefits"] = plain(live.benefits)
        document[STOCK] = dict(sorted(live.stock.items()))
    keyed = sorted((j for j in live.journeys or [] if j.key), key=lambda j: j.key)
    if keyed:
        document[JOURNEYS] = [_keyed_document(j) for j in keyed]
    challenges = sorted((c for c in live.challenges or [] if c.key), key=lambda c: c.key)
    if challenges:
        document[CHALLENGES] = [_keyed_document(c) for c in challenges]
    return document


def _keyed_document(message: Message) -> dict[str, Any]:
    """A journey or challenge as a file writes it: its key first, without the service's name
    for it, the unit only when not the group's."""
    written = plain(message)
    written.pop("name", None)
    if written.get("state") == "JOURNEY_STATE_ENDED":
        del written["state"]  # the service's (past its end_time), not one a file sets
    if written.get("unit") == "group":
        del written["unit"]
    return {"key": written.pop("key"), **written}


def engagement_copy(message: challenges_pb2.Challenge) -> challenges_pb2.Challenge:
    copy = challenges_pb2.Challenge()
    copy.CopyFrom(message)
    return copy


def export_text(live: Live, now: datetime) -> str:
    head = (
        f"# The live programme, exported {now.isoformat(timespec='seconds')} "
        "(see docs/programme-file.md).\n"
    )
    versions = ", ".join(
        f"{s.key} v{getattr(live, s.key).version}"
        for s in SECTIONS
        if getattr(live, s.key) is not None
    )
    if versions:
        head += f"# Versions: {versions}.\n"
    body = yaml.safe_dump(export(live, now), sort_keys=False, allow_unicode=True, width=100)
    return head + body
