"""The kinds of import: members and past orders. Both are the same long-running operation in
the contracts (Create by client stream, Get, List, Cancel, ListRows), named after the resource
(`MemberImport`, `OrderImport`): a `Kind` finds its RPCs, messages and fields by those names, so
every command works for both with one piece of code. What differs is said here: the progress
counters worth showing and the row outcomes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from google.protobuf.message import Message
from loyalty.identity.v1 import (
    member_import_pb2,
    member_import_pb2_grpc,
    order_import_pb2,
    order_import_pb2_grpc,
)

# The descriptor classes differ by protobuf backend (upb or pure Python): typed loosely.
EnumDescriptor = Any
# A MemberImport or an OrderImport: the same fields by the same names (name, spec, state,
# progress, error, file_bytes...), which the commands read by name.
Resource = Any

# Each part of the file sent in its own message (the contracts' bound).
PART_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Kind:
    """One kind of import: its resource's name and where the contracts keep it."""

    key: str  # "members", "orders": how the command line names it
    resource: str  # "MemberImport"
    messages: ModuleType  # the _pb2 module
    stubs: ModuleType  # the _pb2_grpc module
    counters: tuple[tuple[str, str], ...]  # (progress field, label), as the summary shows them
    outcome_enum: str  # the row outcome enum, e.g. "ImportRowOutcome"

    @property
    def collection(self) -> str:
        """`memberImports`: the first part of an import's name."""
        return self.resource[0].lower() + self.resource[1:] + "s"

    @property
    def field(self) -> str:
        """`member_import`: the response field holding one import."""
        return re.sub(r"(?<!^)([A-Z])", r"_\1", self.resource).lower()

    @property
    def service(self) -> str:
        return f"{self.resource}Service"

    def stub(self, channel: Any) -> Any:
        return getattr(self.stubs, f"{self.service}Stub")(channel)

    def message(self, name: str) -> type[Message]:
        """A message of the kind's contract: `message("Get{}Request")` is GetMemberImportRequest."""
        found: type[Message] = getattr(self.messages, name.format(self.resource))
        return found

    @property
    def spec(self) -> type[Message]:
        return self.message("{}Spec")

    @property
    def outcomes(self) -> EnumDescriptor:
        return self.messages.DESCRIPTOR.enum_types_by_name[self.outcome_enum]

    def outcome_prefix(self) -> str:
        """`IMPORT_ROW_OUTCOME_`: what every value of the outcome enum starts with."""
        zero: str = self.outcomes.values_by_number[0].name
        return zero[: -len("UNSPECIFIED")]

    def outcome_names(self) -> list[str]:
        """The outcomes as a command line takes them: `created`, `merge-candidate`..."""
        prefix = self.outcome_prefix()
        return [
            value.name[len(prefix) :].lower().replace("_", "-")
            for value in self.outcomes.values
            if value.number
        ]

    def outcome_number(self, name: str) -> int:
        value = self.outcome_prefix() + name.upper().replace("-", "_")
        number: int = self.outcomes.values_by_name[value].number
        return number

    def outcome_name(self, number: int) -> str:
        found = self.outcomes.values_by_number.get(number)
        if found is None or not number:
            return "-"
        name: str = found.name
        return name[len(self.outcome_prefix()) :].lower().replace("_", "-")


MEMBERS = Kind(
    key="members",
    resource="MemberImport",
    messages=member_import_pb2,
    stubs=member_import_pb2_grpc,
    counters=(
        ("created", "created"),
        ("linked", "linked"),
        ("unchanged", "unchanged"),
        ("candidates", "merge candidates"),
        ("merged", "merged"),
        ("rejected", "rejected"),
    ),
    outcome_enum="ImportRowOutcome",
)
ORDERS = Kind(
    key="orders",
    resource="OrderImport",
    messages=order_import_pb2,
    stubs=order_import_pb2_grpc,
    counters=(
        ("imported", "imported"),
        ("unknown_member", "unknown member"),
        ("duplicates", "duplicates"),
        ("rejected", "rejected"),
    ),
    outcome_enum="OrderRowOutcome",
)
KINDS = {kind.key: kind for kind in (MEMBERS, ORDERS)}


class UnknownName(ValueError):
    """A name that is no import's."""


def kind_of(name: str) -> tuple[Kind, str]:
    """The kind of an import and its full name, from `memberImports/ID` or `orderImports/ID`
    (a bare ID is a member import's)."""
    collection, slash, rest = name.partition("/")
    if not slash:
        if not name or "/" in name:
            raise UnknownName(name)
        return MEMBERS, f"{MEMBERS.collection}/{name}"
    for kind in KINDS.values():
        if collection == kind.collection and rest and "/" not in rest:
            return kind, name
    raise UnknownName(name)
