"""A programme file reviewed against the live programme, then applied as whoever confirms it:
what the console's programme page calls (no HTTP here, and no settings: the caller brings its
channels and its operator's credentials, see `live.calling`).

    found = review(text, await services.read())     # or: await review_live(text, services)
    found.problems        # the file's problems, each at its line and column (nothing to apply)
    found.sections        # per section: what is added, changed and removed, at its line
    found.digest          # the live state (and the plan) the review was made against
    outcome = await apply(found, digest, calling(channels, operator_metadata), reason=...)

`apply` reads the live programme again, as the caller, and refuses (`Stale`) when it is no
longer the one reviewed: a digest stands for the live sections the file names (their whole
stored documents, versions included) and the steps planned from them, so a change published
by someone else in between, or a file time that has passed since, means a new review. The
reward stock is left out of the digest (members' purchases move it all the time): its step
reads the stock again when it runs and only ever tops it up. The steps then run with the
caller's metadata, so each service records the change as the caller's.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import Message

from loyalty_admin.document import InvalidFile, Path_, Problem, ProgrammeFile, loads, positions
from loyalty_admin.live import Live, Services
from loyalty_admin.messages import CHALLENGES, JOURNEYS, KEYS, SECTION, STOCK
from loyalty_admin.programme import Outcome, Planner, PlanRefused, Step
from loyalty_admin.programme import apply as run_steps

Kind = Literal["added", "changed", "removed"]
_KINDS: dict[str, Kind] = {"+": "added", "~": "changed", "-": "removed"}
_PART = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


class Stale(Exception):
    """The live programme is no longer the one the review was made against (or the digest is
    not the review's): nothing was applied; review the file again."""


@dataclass(frozen=True)
class Change:
    """One difference: `path` inside its section (`units[hotel].multiplier`), the value before
    and after (canonical JSON, shortened; "" for the side that has none), and the line and
    column in the new file: of the value itself, or for what the file leaves out (a removed
    element, a field left to its default) of the nearest enclosing value it has."""

    kind: Kind
    path: str
    before: str
    after: str
    line: int
    column: int = 0
    text: str = ""  # the whole change in one line, as `loyalty-admin programme diff` says it


@dataclass(frozen=True)
class SectionReview:
    """One section of the file against its service: `changes` empty when unchanged."""

    section: str
    service: str
    live_version: int
    line: int  # of the section in the new file
    changes: tuple[Change, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[Kind, int]:
        found: dict[Kind, int] = {"added": 0, "changed": 0, "removed": 0}
        for change in self.changes:
            found[change.kind] += 1
        return found


@dataclass(frozen=True)
class Review:
    """A file against the live programme. `ok`: it may be applied (no problems, not refused);
    `digest` is what a confirmation carries back to `apply`."""

    text: str
    digest: str
    problems: tuple[Problem, ...] = ()
    refused: str = ""  # why the plan cannot be applied as the live programme stands
    sections: tuple[SectionReview, ...] = ()
    effective_from: datetime | None = None
    file: ProgrammeFile | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.refused and self.file is not None

    @property
    def changed(self) -> bool:
        return any(section.changed for section in self.sections)


def review(
    text: str,
    live: Live,
    *,
    now: datetime | None = None,
    effective_from: datetime | None = None,
) -> Review:
    """The file `text` against `live` (as `Services.read` gives it; with the journeys read
    when the file has journeys or challenges). Pure: nothing is called."""
    now = now or datetime.now(UTC)
    try:
        file = loads(text)
    except InvalidFile as invalid:
        return Review(text, _digest(text, None, []), problems=tuple(invalid.problems))
    state = _live_state(file, live)
    try:
        steps = Planner(None, live, now=now, effective_from=effective_from).plan(file)
    except PlanRefused as refused:
        said = [str(refused)]
        return Review(
            text,
            _digest(text, state, said),
            refused=str(refused),
            effective_from=effective_from,
            file=file,
        )
    where = positions(text)
    sections = tuple(_section(step, where) for step in steps)
    return Review(
        text,
        _digest(text, state, [_said(step) for step in steps]),
        sections=sections,
        effective_from=effective_from,
        file=file,
    )


def needs_journeys(file: ProgrammeFile | None) -> bool:
    return file is None or file.journeys is not None or file.challenges is not None


async def review_live(
    text: str,
    services: Services,
    *,
    now: datetime | None = None,
    effective_from: datetime | None = None,
) -> Review:
    """The file against what the services hold now (read as the caller of `services`)."""
    try:
        file: ProgrammeFile | None = loads(text)
    except InvalidFile:
        file = None
    if file is None:
        return review(text, Live(), now=now, effective_from=effective_from)
    live = await services.read(journeys=needs_journeys(file))
    return review(text, live, now=now, effective_from=effective_from)


async def apply(
    reviewed: Review,
    digest: str,
    services: Services,
    *,
    reason: str = "",
    now: datetime | None = None,
) -> Outcome:
    """Apply a reviewed file as the caller of `services`, if the live programme is still the
    one reviewed. Raises `Stale` (nothing applied) when `digest` is not the review's or the
    live programme changed since, `PlanRefused` when the review cannot be applied at all; a
    step the services refuse is in the outcome (the ones before it stay applied)."""
    if not reviewed.ok or reviewed.file is None:
        raise PlanRefused(reviewed.refused or f"the file has {len(reviewed.problems)} problem(s)")
    if digest != reviewed.digest:
        raise Stale("the confirmation is not for this review: review the file again")
    now = now or datetime.now(UTC)
    live = await services.read(journeys=needs_journeys(reviewed.file))
    again = review(reviewed.text, live, now=now, effective_from=reviewed.effective_from)
    if again.digest != reviewed.digest:
        raise Stale(
            "the live programme changed since the review (or a time in the file has passed): "
            "review the file again"
        )
    planner = Planner(
        services, live, now=now, effective_from=reviewed.effective_from, reason=reason
    )
    return await run_steps(planner.plan(reviewed.file), say=lambda _: None)


def _said(step: Step) -> list[Any]:
    if step.section == STOCK:
        return [step.section]  # levels move with every purchase; the step reads them again
    return [step.section, step.live_version, step.changes, step.notes]


def _stored(message: Message | None) -> Any:
    if message is None:
        return None
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _live_state(file: ProgrammeFile, live: Live) -> dict[str, Any]:
    """The live documents of the sections the file names (the stock left out: see the module's
    docstring)."""
    state: dict[str, Any] = {}
    if file.points is not None:
        state["points"] = [_stored(live.points), live.points_in_force]
    if file.tiers is not None:
        state["tiers"] = _stored(live.tiers)
    if file.benefits is not None or file.reward_stock is not None:
        state["benefits"] = _stored(live.benefits)
    if file.reward_stock is not None:
        state[STOCK] = sorted(live.stock)  # which rewards there are, not how many
    for key, items in ((JOURNEYS, live.journeys), (CHALLENGES, live.challenges)):
        if getattr(file, key) is not None:
            state[key] = sorted(
                json.dumps(_stored(item), sort_keys=True, ensure_ascii=False)
                for item in items or []
            )
    return state


def _digest(text: str, state: Any, plan: list[Any]) -> str:
    blob = json.dumps([text, state, plan], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _section(step: Step, where: Any) -> SectionReview:
    line, _ = where.at((step.section,), key=True)
    return SectionReview(
        section=step.section,
        service=step.service,
        live_version=step.live_version,
        line=line,
        changes=tuple(_change(step.section, said, where) for said in step.changes),
        notes=tuple(step.notes),
    )


def _change(section: str, said: str, where: Any) -> Change:
    """A line of `messages.changes` (`~ path: before -> after`, `+ path: value`,
    `- path: value`) as a Change, placed in the new file."""
    kind = _KINDS.get(said[:1], "changed")
    path, _, detail = said[2:].partition(": ")
    before, after = "", ""
    if kind == "changed":
        before, _, after = detail.partition(" -> ")
    elif kind == "added":
        after = detail
    else:
        before = detail
    # The documents' paths start inside their section; journeys, challenges and the stock
    # name theirs ("journeys[win-back].steps").
    inside = f"{section}.{path}" if section in SECTION else path
    found, whole = _file_path(inside, where.data)
    # An element the file does not have (removed): at the key of the list it was in.
    line, column = where.at(found, key=not whole)
    return Change(kind, path, before, after, line, column, said)


def _file_path(dotted: str, data: Any) -> tuple[Path_, bool]:
    """`units[hotel].multiplier` (the diff's names) as the file's path
    (`("points", "units", 1, "multiplier")`), as far as the file has the elements it names
    (False: an element is not in the file)."""
    found: list[str | int] = []
    node = data
    for match in _PART.finditer(dotted):
        name, field_name = match.group(1), match.group(2)
        if field_name is not None:
            found.append(field_name)
            node = node.get(field_name) if isinstance(node, dict) else None
            continue
        if isinstance(node, dict):
            found.append(name)
            node = node.get(name)
            continue
        index = _element(node, name)
        if index is None:
            return tuple(found), False
        found.append(index)
        node = node[index]
    return tuple(found), True


def _element(items: Any, name: str) -> int | None:
    """The index of the element a diff names `[name]`, by the field that names the list's
    elements (the first of `messages.KEYS` every element has)."""
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return None
    for key in KEYS:
        if items and all(key in item for item in items):
            for index, item in enumerate(items):
                if str(item[key]) == name:
                    return index
            return None
    return None


__all__ = [
    "Change",
    "Review",
    "SectionReview",
    "Stale",
    "apply",
    "needs_journeys",
    "review",
    "review_live",
]
