"""The programme file's sections and the contracts' messages they are.

Each top-level key of a programme file is one service's document, written as the protobuf
message that service's Update RPC takes (field names as in the .proto files, enums by name,
timestamps RFC 3339, decimals as strings), so the file follows the contracts and nothing is
mapped by hand: `json_format.ParseDict` reads a section, `plain` writes one back. Only the
reward stock, which the contracts keep outside the catalogue (RestockReward), is a plain map,
and `journeys` and `challenges` lists of engagement's journeys and challenges (each the message
CreateJourney / CreateChallenge takes, named by its `key`).

`canonical` is what two versions of a section are compared by: the service's stored answer
spells decimals its own way ("5000.00" for "5000"), fills defaults the file may leave out and
need not keep the order of lists whose order means nothing, so a section is "unchanged" when
its canonical form is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from loyalty.benefits.v1 import catalogue_pb2
from loyalty.engagement.v1 import challenges_pb2, engagement_service_pb2
from loyalty.points.v1 import programme_pb2
from loyalty.tiers.v1 import tiers_service_pb2

# The descriptor classes differ by protobuf backend (upb or pure Python): typed loosely.
FieldDescriptor = Any


@dataclass(frozen=True)
class Section:
    """A section of the file: its key, the service that keeps it and the message it is."""

    key: str
    service: str
    message: type[Message]
    what: str


SECTIONS = (
    Section("points", "points", programme_pb2.Programme, "the points programme"),
    Section("tiers", "tiers", tiers_service_pb2.Ladder, "the tier ladder"),
    Section("benefits", "benefits", catalogue_pb2.Catalogue, "the benefits catalogue"),
)
SECTION = {section.key: section for section in SECTIONS}
STOCK = "reward_stock"  # reward code -> units kept in stock (benefits service)
# Journeys (engagement service): a list of loyalty.engagement.v1.Journey, each named by its
# `key`; the file's journeys are made or changed, the others left alone.
JOURNEYS = "journeys"
JOURNEY = engagement_service_pb2.Journey
# Challenges (engagement service): a list of loyalty.engagement.v1.Challenge, each named by its
# `key`; the missing ones are created (a challenge is never changed: the service has no update).
CHALLENGES = "challenges"
CHALLENGE = challenges_pb2.Challenge

# What a service stores when the section leaves a field unset (from the contracts' comments
# and the services' conversions): a file without them matches a live document with them.
DEFAULTS: dict[tuple[str, str], object] = {
    ("loyalty.points.v1.Programme", "time_zone"): "Asia/Shanghai",
    ("loyalty.points.v1.Programme", "base_currency_code"): "CNY",
    ("loyalty.tiers.v1.Ladder", "window_months"): 12,
    ("loyalty.tiers.v1.Ladder", "window"): "WINDOW_ROLLING_MONTHS",
    ("loyalty.tiers.v1.Ladder", "downgrade_policy"): "DOWNGRADE_POLICY_ONE_LEVEL",
    ("loyalty.tiers.v1.Ladder", "time_zone"): "UTC",
    ("loyalty.tiers.v1.Ladder", "base_currency_code"): "CNY",
    ("loyalty.tiers.v1.Tier", "combine"): "COMBINE_ANY",
    ("loyalty.benefits.v1.Catalogue", "time_zone"): "Asia/Shanghai",
    ("loyalty.engagement.v1.Journey", "unit"): "group",  # the admin's
    ("loyalty.engagement.v1.Journey", "state"): "JOURNEY_STATE_DRAFT",
    ("loyalty.engagement.v1.SendMessage", "channel"): "dev",
    ("loyalty.engagement.v1.Challenge", "unit"): "group",
    ("loyalty.engagement.v1.Challenge", "time_zone"): "Asia/Shanghai",
}

# Lists whose order is meaning: the ladder's tiers and the catalogue's tiers, entry tier first.
ORDERED = frozenset(
    {
        ("loyalty.tiers.v1.Ladder", "tiers"),
        ("loyalty.benefits.v1.Catalogue", "tiers"),
        ("loyalty.engagement.v1.Journey", "steps"),
    }
)

# The field naming an element of a list, for diffs ("units[hotel].multiplier").
KEYS = ("key", "code", "unit", "tier", "currency_code", "partner", "metric")


def output_only(field: FieldDescriptor) -> bool:
    behaviours = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.OUTPUT_ONLY in behaviours


def required(field: FieldDescriptor) -> bool:
    behaviours = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behaviours


def _is_set(message: Message, field: FieldDescriptor) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.message_type is not None or field.containing_oneof is not None:
        return message.HasField(field.name)
    return bool(getattr(message, field.name))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.enum_type is not None:
        found = field.enum_type.values_by_number.get(value)
        return found.name if found is not None else value
    return value


def plain(message: Message) -> dict[str, Any]:
    """A message as a file writes it: set fields only, in the contract's order, without the
    fields the service assigns (version, create_time, available), int64 as numbers."""
    if message.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        raise TypeError("a timestamp is a value, not a document")
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if output_only(field) or not _is_set(message, field):
            continue
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = dict(sorted(value.items()))
        elif field.is_repeated:
            out[field.name] = [_value(field, item) for item in value]
        else:
            rendered = _value(field, value)
            if rendered != {}:
                out[field.name] = rendered
    return out


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is None:
        return _scalar(field, value)
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return value.ToJsonString()
    return plain(value)


def parse(section: Section, data: Any) -> Message:
    """A section's mapping as its message (json_format.ParseError when it does not fit)."""
    message = section.message()
    json_format.ParseDict(data or {}, message)
    return message


def _decimal(text: str) -> str:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    if not number.is_finite():
        return text
    return format(number.normalize(), "f")


def canonical(message: Message) -> dict[str, Any]:
    """What a section is compared by (see the module's docstring)."""
    name = message.DESCRIPTOR.full_name
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if output_only(field):
            continue
        value = getattr(message, field.name)
        rendered: Any
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            rendered = {k: _decimal(v) if isinstance(v, str) else v for k, v in value.items()}
        elif field.is_repeated:
            items = [_canonical_value(field, item) for item in value]
            if (name, field.name) not in ORDERED:
                items.sort(key=lambda item: json.dumps(item, sort_keys=True, ensure_ascii=False))
            rendered = items
        elif field.message_type is not None:
            rendered = _canonical_value(field, value) if message.HasField(field.name) else {}
        else:
            rendered = _canonical_value(field, value)
        if rendered in ("", 0, [], {}, False, None):
            rendered = DEFAULTS.get((name, field.name), rendered)
        if rendered not in ("", 0, [], {}, False, None):
            out[field.name] = rendered
    return out


def _canonical_value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is None:
        if field.enum_type is not None and value == 0:
            return ""  # unset: the service's default applies
        scalar = _scalar(field, value)
        return _decimal(scalar) if isinstance(scalar, str) and field.enum_type is None else scalar
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return value.ToJsonString()
    return canonical(value)


def changes(live: Any, wanted: Any, path: str = "") -> list[str]:
    """What turns `live` into `wanted`, one line a difference: `~ units[hotel].multiplier: 2 ->
    2.5`, `+ campaigns[double-12]: {...}`, `- partners[skyair]: {...}` (canonical forms)."""
    if isinstance(live, dict) and isinstance(wanted, dict):
        return _members(live, wanted, lambda key: f"{path}.{key}" if path else key)
    if isinstance(live, list) and isinstance(wanted, list):
        keyed_live, keyed_wanted = _keyed(live), _keyed(wanted)
        if keyed_live is not None and keyed_wanted is not None:
            lines = _members(keyed_live, keyed_wanted, lambda name: f"{path}[{name}]")
            if not lines and list(keyed_live) != list(keyed_wanted):
                lines.append(f"~ {path}: order {list(keyed_live)} -> {list(keyed_wanted)}")
            return lines
    if live != wanted:
        return [f"~ {path}: {_short(live)} -> {_short(wanted)}"]
    return []


def _members(
    live: dict[str, Any], wanted: dict[str, Any], child: Callable[[str], str]
) -> list[str]:
    lines: list[str] = []
    for key in [*live, *(k for k in wanted if k not in live)]:
        if key not in wanted:
            lines.append(f"- {child(key)}: {_short(live[key])}")
        elif key not in live:
            lines.append(f"+ {child(key)}: {_short(wanted[key])}")
        else:
            lines.extend(changes(live[key], wanted[key], child(key)))
    return lines


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    """A list of documents by the field that names them, or None when they have none (or two
    share a name)."""
    if not items:
        return {}
    if not all(isinstance(item, dict) for item in items):
        return None
    for key in KEYS:
        if all(key in item for item in items):
            names = [str(item[key]) for item in items]
            if len(set(names)) == len(names):
                return dict(zip(names, items, strict=True))
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."
