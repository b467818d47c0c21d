"""The contracts' comments, by full name, from the descriptor set `make protos` writes beside
the generated code: the descriptions of the gateway's OpenAPI document and of the programme
file's JSON Schema (`loyalty_admin.schema`) come from here, so both say what the .proto says."""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterator
from typing import Any

from google.protobuf import descriptor_pb2


@functools.cache
def comments() -> dict[str, str]:
    """The contracts' comments by full name (`pkg.Message`, `pkg.Message.field`,
    `pkg.Service.Method`), from the descriptor set `make protos` writes beside the code; empty
    if it is missing (the document is then without descriptions)."""
    try:
        data = importlib.resources.files("loyalty").joinpath("descriptors.binpb").read_bytes()
    except (FileNotFoundError, OSError):
        return {}
    found: dict[str, str] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        text = {
            tuple(where.path): where.leading_comments.strip()
            for where in file.source_code_info.location
            if where.leading_comments.strip()
        }
        for path, name in _named_paths(file):
            if path in text:
                found[name] = text[path]
    return found


def _named_paths(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    """(source location path, full name) of every message, field and method of a file (the
    numbers are the FileDescriptorProto field numbers: message_type 4, field 2, nested 3,
    service 6, method 2)."""

    def messages(
        found: Any, path: tuple[int, ...], scope: str
    ) -> Iterator[tuple[tuple[int, ...], str]]:
        for index, message in enumerate(found):
            here, name = (*path, index), f"{scope}.{message.name}"
            yield here, name
            for number, field in enumerate(message.field):
                yield (*here, 2, number), f"{name}.{field.name}"
            yield from messages(message.nested_type, (*here, 3), name)

    yield from messages(file.message_type, (4,), file.package)
    for index, service in enumerate(file.service):
        for number, method in enumerate(service.method):
            yield (6, index, 2, number), f"{file.package}.{service.name}.{method.name}"
