"""HTTP routes derived from the contracts' `google.api.http` annotations (AIP-127).

One source of truth: every annotated method of the services behind the gateway becomes a route.
A rule's path template (`/v1/{member=members/*}/points:redeem`) is parsed by the grammar of
google/api/http.proto and compiled to a regular expression; matched variables set the request's
fields, the body (`*` or one field) is parsed with protobuf's json_format (unknown fields
refused), and what is left of the fields may come from the query string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

VERBS = ("get", "put", "post", "delete", "patch")


class TemplateError(ValueError):
    """A path template the grammar does not allow."""


@dataclass(frozen=True)
class Variable:
    field_path: str  # "member", "tier_grant.name"
    segments: tuple[str, ...]  # its own template: ("members", "*"); ("*",) when not given


@dataclass(frozen=True)
class PathTemplate:
    """A parsed template: literal segments, wildcards and variables, and an optional verb."""

    text: str
    parts: tuple[str | Variable, ...]
    verb: str = ""
    regex: re.Pattern[str] = field(compare=False, repr=False, default=re.compile(""))

    @staticmethod
    def parse(text: str) -> PathTemplate:
        if not text.startswith("/"):
            raise TemplateError(f"{text!r}: a template starts with /")
        body, verb = text[1:], ""
        close = body.rfind("}")
        colon = body.rfind(":")
        if colon > close and colon > body.rfind("/"):
            body, verb = body[:colon], body[colon + 1 :]
        parts: list[str | Variable] = []
        for segment in _split(body):
            if segment.startswith("{"):
                if not segment.endswith("}"):
                    raise TemplateError(f"{text!r}: unclosed variable {segment!r}")
                inner = segment[1:-1]
                path, _, pattern = inner.partition("=")
                if not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*", path):
                    raise TemplateError(f"{text!r}: bad field path {path!r}")
                inner_segments = tuple(pattern.split("/")) if pattern else ("*",)
                if any(s.startswith("{") for s in inner_segments):
                    raise TemplateError(f"{text!r}: nested variables")
                parts.append(Variable(path, inner_segments))
            elif not segment:
                raise TemplateError(f"{text!r}: empty segment")
            else:
                parts.append(segment)
        regex = "/" + "/".join(_part_regex(p, i) for i, p in enumerate(parts))
        if verb:
            regex += ":" + re.escape(verb)
        return PathTemplate(text, tuple(parts), verb, re.compile(f"^{regex}$"))

    def match(self, path: str) -> dict[str, str] | None:
        """The variables' values (percent-decoded) if `path` matches, else None."""
        found = self.regex.match(path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for index, part in enumerate(self.parts):
            if isinstance(part, Variable):
                values[part.field_path] = unquote(found.group(f"v{index}"))
        return values

    def openapi_path(self) -> tuple[str, list[tuple[str, str, str]]]:
        """The OpenAPI form, each wildcard of a variable a path parameter named after its
        collection (`/v1/members/{memberId}/points:redeem`), and per parameter
        (name, field path, the part of the variable it stands for)."""
        out: list[str] = []
        params: list[tuple[str, str, str]] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            before = ""
            for segment in part.segments:
                if segment in ("*", "**"):
                    name = _param_name(before or part.field_path, [p[0] for p in params])
                    out.append(f"{{{name}}}")
                    params.append((name, part.field_path, segment))
                else:
                    out.append(segment)
                before = segment
        return "/" + "/".join(out) + (f":{self.verb}" if self.verb else ""), params


def _split(body: str) -> list[str]:
    """Segments split on '/' outside braces."""
    segments, depth, current = [], 0, ""
    for char in body:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if char == "/" and depth == 0:
            segments.append(current)
            current = ""
        else:
            current += char
    segments.append(current)
    return segments


def _segment_regex(segment: str) -> str:
    if segment == "*":
        return "[^/]+"
    if segment == "**":
        return ".+"
    return re.escape(segment)


def _part_regex(part: str | Variable, index: int) -> str:
    if isinstance(part, str):
        return _segment_regex(part)
    return f"(?P<v{index}>" + "/".join(_segment_regex(s) for s in part.segments) + ")"


def _param_name(collection: str, taken: Sequence[str]) -> str:
    word = collection.split(".")[-1]
    if word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("s"):
        word = word[:-1]
    name = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), word) + "Id"
    while name in taken:
        name += "_"
    return name


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one gRPC method."""

    service: ServiceDescriptor
    method: MethodDescriptor
    verb: str
    template: PathTemplate
    body: str  # "" (no body), "*" or a field name

    @property
    def grpc_path(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def request_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    @property
    def creates(self) -> bool:
        """AIP-133: a Create method answers 201 Created."""
        return self.method.name.startswith("Create") and self.verb == "post"


def _rules(method: MethodDescriptor) -> Iterable[http_pb2.HttpRule]:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def routes_of(services: Iterable[ServiceDescriptor]) -> list[Route]:
    found: list[Route] = []
    for service in services:
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                continue
            for rule in _rules(method):
                verb = rule.WhichOneof("pattern")
                if verb not in VERBS:
                    continue
                template = PathTemplate.parse(getattr(rule, verb))
                found.append(Route(service, method, verb, template, rule.body))
    # Literal-first: a template with fewer variables wins when two match one path.
    return sorted(found, key=lambda r: sum(isinstance(p, Variable) for p in r.template.parts))


def set_field(message: Message, path: str, value: str) -> None:
    """Set a (possibly nested) field from its text, as a path variable or query parameter
    gives it (names in snake_case or camelCase); ValueError when the text does not fit the
    field. Timestamps, durations and field masks take their JSON forms (RFC 3339, "1.5s",
    comma-separated camelCase paths), as grpc-gateway's clients send them."""
    *parents, last = path.split(".")
    target = message
    for name in parents:
        parent = _field(target, name)
        if parent is None or parent.message_type is None or parent.is_repeated:
            raise ValueError(f"no such field: {path}")
        target = getattr(target, parent.name)
    descriptor = _field(target, last)
    if descriptor is None:
        raise ValueError(f"no such field: {path}")
    if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        if descriptor.message_type.full_name not in JSON_FORMS or descriptor.is_repeated:
            raise ValueError(f"no such field: {path}")
        try:
            getattr(target, descriptor.name).FromJsonString(value)
        except ValueError as error:
            raise ValueError(
                f"{descriptor.json_name}: {JSON_FORMS[descriptor.message_type.full_name]}"
            ) from error
        return
    converted = _convert(descriptor, value)
    if _is_repeated(descriptor):
        getattr(target, descriptor.name).append(converted)
    else:
        setattr(target, descriptor.name, converted)


# Well-known types a path or query parameter gives in their JSON forms, and what is expected.
JSON_FORMS = {
    "google.protobuf.Timestamp": "an RFC 3339 time, e.g. 2026-11-29T13:00:00Z",
    "google.protobuf.Duration": 'seconds with an "s", e.g. 3600s',
    "google.protobuf.FieldMask": "comma-separated field names, e.g. fullName,birthday",
}


def _field(message: Message, name: str) -> Any:
    """A field of a message by its proto name or its JSON (camelCase) name."""
    fields = message.DESCRIPTOR.fields_by_name
    found = fields.get(name)
    if found is None:
        found = next((f for f in message.DESCRIPTOR.fields if f.json_name == name), None)
    return found


def _is_repeated(descriptor: Any) -> bool:
    return bool(descriptor.is_repeated)


def _convert(descriptor: Any, value: str) -> Any:
    kind = descriptor.type
    if kind in (FieldDescriptor.TYPE_STRING,):
        return value
    if kind == FieldDescriptor.TYPE_BOOL:
        if value not in ("true", "false"):
            raise ValueError(f"{descriptor.json_name}: true or false")
        return value == "true"
    if kind == FieldDescriptor.TYPE_ENUM:
        enum = descriptor.enum_type.values_by_name.get(value)
        if enum is None:
            raise ValueError(
                f"{descriptor.json_name}: one of {list(descriptor.enum_type.values_by_name)}"
            )
        return enum.number
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float(value)
    if kind == FieldDescriptor.TYPE_BYTES:
        raise ValueError(f"{descriptor.json_name}: bytes are not accepted in a path or query")
    return int(value)
