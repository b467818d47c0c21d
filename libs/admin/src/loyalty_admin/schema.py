"""The programme file's JSON Schema, generated from the contracts' descriptors (with their
comments as descriptions), so editors validate a file as it is typed and `programme validate`
checks the same rules. `docs/programme.schema.json` is its copy in the repository:

    python -m loyalty_admin.schema > docs/programme.schema.json

(a test fails when the copy is stale). Fields the services assign (OUTPUT_ONLY) are not part
of a file; fields marked REQUIRED are required; unknown fields are errors, so a misspelt
field never passes unnoticed.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from google.protobuf import descriptor
from loyalty_kit.contract_comments import comments

from loyalty_admin.messages import (
    CHALLENGE,
    CHALLENGES,
    JOURNEY,
    JOURNEYS,
    SECTIONS,
    STOCK,
    output_only,
    required,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_INTEGERS = {
    descriptor.FieldDescriptor.TYPE_INT32,
    descriptor.FieldDescriptor.TYPE_INT64,
    descriptor.FieldDescriptor.TYPE_SINT32,
    descriptor.FieldDescriptor.TYPE_SINT64,
    descriptor.FieldDescriptor.TYPE_UINT32,
    descriptor.FieldDescriptor.TYPE_UINT64,
    descriptor.FieldDescriptor.TYPE_FIXED32,
    descriptor.FieldDescriptor.TYPE_FIXED64,
    descriptor.FieldDescriptor.TYPE_SFIXED32,
    descriptor.FieldDescriptor.TYPE_SFIXED64,
}


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}

    def ref(self, message: Any) -> dict[str, Any]:
        name = message.full_name
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: recursion stops here
            self.defs[name] = self.message(message)
        return {"$ref": f"#/$defs/{name}"}

    def message(self, message: Any) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object"}
        if text := comments().get(message.full_name):
            schema["description"] = text
        properties: dict[str, Any] = {}
        needed = []
        for field in message.fields:
            if output_only(field):
                continue
            properties[field.name] = self.field(field)
            if text := comments().get(f"{message.full_name}.{field.name}"):
                properties[field.name] = {"description": text, **properties[field.name]}
            if required(field):
                needed.append(field.name)
                if field.is_repeated:
                    properties[field.name]["minItems"] = 1
        schema["properties"] = properties
        if needed:
            schema["required"] = needed
        schema["additionalProperties"] = False
        return schema

    def field(self, field: Any) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        if field.is_repeated:
            return {"type": "array", "items": self.single(field)}
        return self.single(field)

    def single(self, field: Any) -> dict[str, Any]:
        if field.message_type is not None:
            if field.message_type.full_name == "google.protobuf.Timestamp":
                return {"type": "string", "pattern": RFC3339}
            return self.ref(field.message_type)
        if field.enum_type is not None:
            names = [v.name for v in field.enum_type.values if v.number != 0]
            return {"enum": names}
        if field.type in _INTEGERS:
            return {"type": "integer"}
        if field.type == descriptor.FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if field.type in (
            descriptor.FieldDescriptor.TYPE_DOUBLE,
            descriptor.FieldDescriptor.TYPE_FLOAT,
        ):
            return {"type": "number"}
        return {"type": "string"}


@functools.cache
def programme_schema() -> dict[str, Any]:
    builder = _Builder()
    properties: dict[str, Any] = {}
    for section in SECTIONS:
        properties[section.key] = {
            "description": f"{section.what} ({section.message.DESCRIPTOR.full_name}), as "
            f"the {section.service} service's Update RPC takes it",
            **builder.ref(section.message.DESCRIPTOR),
        }
    properties[STOCK] = {
        "description": "Units of each reward (by code) kept in stock: applying the file tops a "
        "reward up to this with RestockReward, never takes stock away.",
        "type": "object",
        "additionalProperties": {"type": "integer", "minimum": 0},
    }
    properties[JOURNEYS] = {
        "description": "Journeys (loyalty.engagement.v1.Journey), as the engagement service's "
        "CreateJourney takes them, each named by its `key`: applying the file creates the "
        "missing ones and updates (a new version), pauses or resumes the ones that differ; "
        "journeys the file does not name are left alone.",
        "type": "array",
        "items": {
            **builder.ref(JOURNEY.DESCRIPTOR),
            "required": ["key", "display_name", "trigger", "steps"],
        },
    }
    properties[CHALLENGES] = {
        "description": "Challenges (loyalty.engagement.v1.Challenge), as the engagement "
        "service's CreateChallenge takes them, each named by its `key`: applying the file "
        "creates the missing ones; a challenge is never changed (a changed one is refused: "
        "give it a new key).",
        "type": "array",
        "items": {
            **builder.ref(CHALLENGE.DESCRIPTOR),
            "required": ["key", "display_name", "goal", "window"],
        },
    }
    return {
        "$schema": DRAFT,
        "title": "Loyalty programme file",
        "description": "The whole loyalty programme in one file: one section per service, each "
        "the message of the contracts it is (field names as in the .proto files, enums by name, "
        "timestamps RFC 3339, decimals as strings). See docs/programme-file.md.",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "$defs": dict(sorted(builder.defs.items())),
    }


def rendered() -> str:
    return json.dumps(programme_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(rendered())
