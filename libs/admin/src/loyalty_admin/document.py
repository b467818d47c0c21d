"""Reading a programme file, offline: every problem points at its line and field.

The YAML is composed into nodes first, so each value's line and column is known by its path
(`points.units[1].multiplier`); the file is then checked against the JSON Schema generated from
the contracts (`loyalty_admin.schema`), each section parsed into its message with
`json_format.ParseDict`, and the sections checked against each other (a reward's coupon
template exists, the catalogue's tiers are the ladder's, a journey's coupon is the
catalogue's...), which no single service can check before the first of them has changed. A
file with problems changes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message
from loyalty.benefits.v1 import catalogue_pb2
from loyalty.engagement.v1 import challenges_pb2, engagement_service_pb2
from loyalty.points.v1 import programme_pb2
from loyalty.tiers.v1 import tiers_service_pb2

from loyalty_admin.messages import (
    CHALLENGE,
    CHALLENGES,
    JOURNEY,
    JOURNEYS,
    SECTION,
    SECTIONS,
    STOCK,
    parse,
)
from loyalty_admin.schema import RFC3339, programme_schema

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, where it is."""

    path: Path_
    message: str
    line: int  # 1-based; 0: the file as a whole
    column: int = 0

    def where(self) -> str:
        return dotted(self.path) or "(file)"

    def render(self, file: str) -> str:
        at = f"{file}:{self.line}:{self.column}" if self.line else file
        return f"{at}: {self.where()}: {self.message}"


class InvalidFile(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))


@dataclass
class ProgrammeFile:
    """The sections a file gives (None: the file leaves that part of the live programme as
    it is)."""

    points: programme_pb2.Programme | None = None
    tiers: tiers_service_pb2.Ladder | None = None
    benefits: catalogue_pb2.Catalogue | None = None
    reward_stock: dict[str, int] | None = None
    journeys: list[engagement_service_pb2.Journey] | None = None
    challenges: list[challenges_pb2.Challenge] | None = None
    sections: list[str] = field(default_factory=list)


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class TextTimesLoader(yaml.SafeLoader):
    """Safe YAML, but timestamps stay the text written (`2026-01-01T00:00:00+08:00`): the
    contracts take RFC 3339 strings, and a date turned into a datetime would lose its offset."""


TextTimesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _marks(
    node: yaml.Node,
    path: Path_,
    found: dict[Path_, yaml.Mark],
    keys: dict[Path_, yaml.Mark],
    problems: list[Problem],
) -> None:
    """Where each value (and each mapping key) of the file is, by path."""
    found[path] = node.start_mark
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                mark = key_node.start_mark
                problems.append(
                    Problem((*path, key), "given twice", mark.line + 1, mark.column + 1)
                )
            seen.add(key)
            keys[(*path, key)] = key_node.start_mark
            _marks(value_node, (*path, key), found, keys, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _marks(item, (*path, index), found, keys, problems)


@dataclass
class _Located:
    values: dict[Path_, yaml.Mark]
    keys: dict[Path_, yaml.Mark]

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        """A problem at `path`, or at the nearest enclosing value the file has."""
        marks = self.keys if key else self.values
        probe = path
        while probe not in marks and probe:
            probe = probe[:-1]
            marks = self.values
        mark = marks.get(probe)
        if mark is None:
            return Problem(path, message, 0)
        return Problem(path, message, mark.line + 1, mark.column + 1)


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(programme_schema())


def _schema_problems(data: Any, located: _Located) -> list[Problem]:
    problems = []
    for error in _validator().iter_errors(data):
        path: Path_ = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for extra in sorted(k for k in error.instance if k not in allowed):
                hint = ", ".join(sorted(allowed)) or "none"
                problems.append(
                    located.problem((*path, extra), f"unknown field (known: {hint})", key=True)
                )
            continue
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = str(error.message).split("'")[1] if "'" in error.message else ""
            problems.append(located.problem(path, f"required field {missing!r} is missing"))
            continue
        problems.append(located.problem(path, _short(error)))
    return problems


def _short(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum":
        names: Any = error.validator_value
        return f"{error.instance!r} is not one of {', '.join(str(v) for v in names)}"
    if error.validator == "pattern" and error.validator_value == RFC3339:
        return f"{error.instance!r} is not an RFC 3339 timestamp, e.g. 2026-01-01T00:00:00+08:00"
    number = isinstance(error.instance, (int, float)) and not isinstance(error.instance, bool)
    if error.validator == "type" and error.validator_value == "string" and number:
        return f"{error.instance} is not a string: decimals are written in quotes" + (
            f' ("{error.instance}")'
        )
    return str(error.message)


def load(path: Path) -> ProgrammeFile:
    return loads(path.read_text(encoding="utf-8"))


def loads(text: str) -> ProgrammeFile:
    """The file's sections as messages, or InvalidFile with every problem found."""
    loader = TextTimesLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise InvalidFile([Problem((), f"not YAML: {error.problem}", line, column)]) from None
    finally:
        loader.dispose()
    problems: list[Problem] = []
    values: dict[Path_, yaml.Mark] = {}
    keys: dict[Path_, yaml.Mark] = {}
    if node is not None:
        _marks(node, (), values, keys, problems)
    located = _Located(values, keys)
    if not isinstance(data, dict):
        raise InvalidFile([located.problem((), "a programme file is a mapping of sections")])
    problems.extend(_schema_problems(data, located))
    # A section of the wrong shape fails these checks: the schema's problems say so.
    with contextlib.suppress(AttributeError, TypeError, KeyError):
        problems.extend(_cross_checks(data, located))
    if problems:
        raise InvalidFile(problems)
    document = ProgrammeFile()
    for section in SECTIONS:
        if section.key not in data:
            continue
        try:
            message: Message = parse(section, data[section.key])
        except json_format.ParseError as error:
            problems.append(located.problem((section.key,), str(error)))
            continue
        setattr(document, section.key, message)
        document.sections.append(section.key)
    if STOCK in data:
        document.reward_stock = dict(data[STOCK] or {})
        document.sections.append(STOCK)
    for key, kind in ((JOURNEYS, JOURNEY), (CHALLENGES, CHALLENGE)):
        if key not in data:
            continue
        items: list[Any] = []
        for i, item in enumerate(data[key] or []):
            message = kind()
            try:
                json_format.ParseDict(item, message)
            except json_format.ParseError as error:
                problems.append(located.problem((key, i), str(error)))
                continue
            items.append(message)
        setattr(document, key, items)
        document.sections.append(key)
    if problems:
        raise InvalidFile(problems)
    return document


@dataclass
class Positions:
    """Where the values of a (well-formed) file are: its data as read and each value's line
    and column by path (`("points", "units", 1, "multiplier")`)."""

    data: Any
    located: _Located

    def at(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """(line, column) of the value at `path` (with `key`: of the key naming it), or of the
        nearest enclosing value the file has; (0, 0) when there is none."""
        found = self.located.problem(path, "", key=key)
        return found.line, found.column


def positions(text: str) -> Positions:
    """The file's values and where they are (a file that is not YAML has none)."""
    loader = TextTimesLoader(text)
    values: dict[Path_, yaml.Mark] = {}
    keys: dict[Path_, yaml.Mark] = {}
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError:
        return Positions({}, _Located(values, keys))
    finally:
        loader.dispose()
    if node is not None:
        _marks(node, (), values, keys, [])
    return Positions(data, _Located(values, keys))


def _codes(data: Any, key: str, path: Path_, field_name: str = "code") -> dict[str, Path_]:
    items = data.get(key, []) if isinstance(data, dict) else []
    return {str(item.get(field_name)): (*path, key, i) for i, item in enumerate(items)}


def _cross_checks(data: dict[str, Any], at: _Located) -> list[Problem]:
    """What only the file as a whole shows: names one section uses that another defines."""
    problems: list[Problem] = []

    def check(
        path: Path_, name: str, known: dict[str, Path_], what: str, key: bool = False
    ) -> None:
        if name and name not in known:
            problems.append(at.problem(path, f"{name!r}: no such {what} in the file", key=key))

    benefits = data.get("benefits") or {}
    templates = _codes(benefits, "coupon_templates", ("benefits",))
    rewards = _codes(benefits, "rewards", ("benefits",))
    for path in _codes(benefits, "tiers", ("benefits",), "tier").values():
        tier = benefits["tiers"][path[-1]]
        for name in ("welcome_coupon_template", "birthday_coupon_template"):
            check((*path, name), tier.get(name, ""), templates, "coupon template")
    for path in rewards.values():
        reward = benefits["rewards"][path[-1]]
        check(
            (*path, "coupon_template"),
            reward.get("coupon_template", ""),
            templates,
            "coupon template",
        )
    ladder = data.get("tiers") or {}
    ladder_tiers = _codes(ladder, "tiers", ("tiers",))
    if "tiers" in data and "benefits" in data:
        listed = [t.get("tier") for t in benefits.get("tiers", [])]
        if listed and listed != list(ladder_tiers):
            problems.append(
                at.problem(
                    ("benefits", "tiers"),
                    f"the catalogue's tiers {listed} are not the ladder's {list(ladder_tiers)}",
                )
            )
        for path in _codes(benefits, "benefits", ("benefits",)).values():
            for i, tier in enumerate(benefits["benefits"][path[-1]].get("tiers", [])):
                check((*path, "tiers", i), tier, ladder_tiers, "tier of the ladder")
    if "tiers" in data and "points" in data:
        for i, rule in enumerate((data.get("points") or {}).get("tiers", [])):
            check(
                ("points", "tiers", i, "tier"),
                rule.get("tier", ""),
                ladder_tiers,
                "tier of the ladder",
            )
    if isinstance(data.get(STOCK), dict) and "benefits" in data:
        for code in data[STOCK]:
            check((STOCK, code), code, rewards, "reward in benefits.rewards", key=True)
    problems.extend(_journey_checks(data, at, templates if "benefits" in data else None))
    problems.extend(_keys(data, at, CHALLENGES))
    if "benefits" in data:
        for i, challenge in enumerate(data.get(CHALLENGES) or []):
            template = (challenge.get("reward") or {}).get("coupon_template", "")
            check(
                (CHALLENGES, i, "reward", "coupon_template"), template, templates, "coupon template"
            )
    return problems


def _keys(data: dict[str, Any], at: _Located, section: str) -> list[Problem]:
    """The keys of a list section's items are well formed and unique."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(data.get(section) or []):
        key = item.get("key", "")
        if key and not JOURNEY_KEY.match(key):
            problems.append(
                at.problem((section, i, "key"), 'lowercase letters, digits and "-", at most 63')
            )
        if key in seen:
            problems.append(
                at.problem((section, i, "key"), f"{key!r} is the key of {section}[{seen[key]}]")
            )
        seen.setdefault(key, i)
    return problems


JOURNEY_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# The states a file may give a journey: ENDED is the service's (past its end_time).
JOURNEY_STATES = ("JOURNEY_STATE_DRAFT", "JOURNEY_STATE_ACTIVE", "JOURNEY_STATE_PAUSED")


def _journey_checks(
    data: dict[str, Any], at: _Located, templates: dict[str, Path_] | None
) -> list[Problem]:
    """Journeys' keys are well formed and unique, their states ones a file may set, and the
    coupon templates their steps issue the catalogue's (when the file has one)."""
    problems = _keys(data, at, JOURNEYS)
    for i, journey in enumerate(data.get(JOURNEYS) or []):
        state = journey.get("state")
        if state is not None and state not in JOURNEY_STATES:
            problems.append(
                at.problem((JOURNEYS, i, "state"), f"one of {', '.join(JOURNEY_STATES)}")
            )
        if templates is None:
            continue
        for j, step in enumerate(journey.get("steps") or []):
            template = (step.get("issue_coupon") or {}).get("template", "")
            if template and template not in templates:
                problems.append(
                    at.problem(
                        (JOURNEYS, i, "steps", j, "issue_coupon", "template"),
                        f"{template!r}: no such coupon template in the file",
                    )
                )
    return problems


__all__ = [
    "SECTION",
    "InvalidFile",
    "Positions",
    "Problem",
    "ProgrammeFile",
    "load",
    "loads",
    "positions",
]
