"""Hypothesis strategies for any request message, built from its descriptor alone.

Every field gets values a hostile or careless client could send: extreme integers, enum numbers
the contract does not name, timestamps outside any calendar, decimals that are not finite or
have a million-digit exponent, strings of 12,000 characters or with NUL characters, and now and
then something plausible (a real member's resource name, a unit code) so calls get past the
first checks and reach deeper code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

SERVICES = ("identity", "points", "tiers", "benefits", "insights", "engagement", "gateway")
# Contracts a service serves beside its `<service>_service.proto`, fuzzed too.
MORE_CONTRACTS = {
    "engagement": ("challenges_pb2", "transactional_pb2"),
    "insights": ("segments_pb2",),
    "benefits": ("coupon_offers_pb2",),
    "identity": ("member_code_pb2", "member_sign_in_pb2", "member_erasure_pb2"),
    "gateway": ("me_service_pb2",),
}

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

# Timestamps the issue found breaking conversions, and the edges of every range there is.
SECONDS = (
    -(2**63),
    -62135596801,  # a second before year 1
    -62135596800,
    -2208988801,  # a second before 1900
    0,
    1_767_225_600,  # 2026
    253402300799,  # 9999-12-31T23:59:59Z
    253402300800,
    1_000_000_000_000,
    2**63 - 1,
)
NANOS = (-1, 0, 999_999_999, 1_000_000_000, -(2**31), 2**31 - 1)
DECIMALS = (
    "1E+999999999",
    "-1E+999999999",
    "1E-999999999",
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "9" * 40,
    "0." + "0" * 30 + "1",
    "1e18",
    "12.5",
    "0",
    "-1",
    "1_000",
    " 1 ",
)
LONG = ("x" * 129, "y" * 3000, "z" * 12000)
# Characters text must not hold (protos/README.md, "Characters in text"): one of each family.
HOSTILE_TEXT = (
    "\x00",  # NUL
    "\t",  # a C0 control
    "\x1b",  # escape, as in a terminal colour sequence
    "\x85",  # a C1 control (next line)
    "\u202e",  # right-to-left override
    "\u2067",  # right-to-left isolate
    "\u200b",  # zero width space
    "\u200d",  # a zero width joiner beside ASCII letters
    "\ufeff",  # byte order mark
    "\u2028",  # line separator
)
PLAIN = ("mall", "hotel", "cinema", "group", "phone", "email", "13800138000", "CNY", "gold")


@dataclass(frozen=True)
class Rpc:
    service: str  # identity, points, ...
    path: str  # /loyalty.points.v1.PointsService/EarnPoints
    method: MethodDescriptor

    @property
    def request_class(self) -> type[Message]:
        return GetMessageClass(self.method.input_type)

    def __str__(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def unary_rpcs() -> Iterator[Rpc]:
    """Every unary method of every service's contract."""
    for service in SERVICES:
        for name in (f"{service}_service_pb2", *MORE_CONTRACTS.get(service, ())):
            module = importlib.import_module(f"loyalty.{service}.v1.{name}")
            for described in module.DESCRIPTOR.services_by_name.values():
                for method in described.methods:
                    if not method.client_streaming and not method.server_streaming:
                        yield Rpc(service, f"/{described.full_name}/{method.name}", method)


def strings(name: str, hints: dict[str, list[str]]) -> st.SearchStrategy[str]:
    hinted = hints.get(name, [])
    return st.one_of(
        # Text of any script; the characters text must not hold come now and then on their
        # own, so most generated requests get past that check to deeper code.
        st.text(st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp")), max_size=12),
        st.sampled_from(PLAIN + DECIMALS + LONG),
        st.sampled_from(HOSTILE_TEXT).map(lambda c: f"Wang{c}Fang"),
        *([st.sampled_from(hinted)] * 3 if hinted else []),
    )


def scalar(field: FieldDescriptor, hints: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return strings(field.name, hints)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=16)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=64 if kind == FieldDescriptor.TYPE_DOUBLE else 32)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        named = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(named), st.integers(*INT32), st.sampled_from(INT32))
    low, high = {
        FieldDescriptor.TYPE_INT32: INT32,
        FieldDescriptor.TYPE_SINT32: INT32,
        FieldDescriptor.TYPE_SFIXED32: INT32,
        FieldDescriptor.TYPE_INT64: INT64,
        FieldDescriptor.TYPE_SINT64: INT64,
        FieldDescriptor.TYPE_SFIXED64: INT64,
        FieldDescriptor.TYPE_UINT32: UINT32,
        FieldDescriptor.TYPE_FIXED32: UINT32,
        FieldDescriptor.TYPE_UINT64: UINT64,
        FieldDescriptor.TYPE_FIXED64: UINT64,
    }[kind]
    return st.one_of(
        st.integers(-3, 20).filter(lambda n: low <= n <= high),
        st.sampled_from((low, high)),
        st.integers(low, high),
    )


def timestamps() -> st.SearchStrategy[dict[str, int]]:
    return st.fixed_dictionaries(
        {
            "seconds": st.one_of(st.sampled_from(SECONDS), st.integers(*INT64)),
            "nanos": st.one_of(st.sampled_from(NANOS), st.integers(*INT32)),
        }
    )


@st.composite
def messages(
    draw: st.DrawFn, descriptor: Descriptor, hints: dict[str, list[str]], depth: int = 0
) -> Message:
    """A message of `descriptor`'s type with any subset of its fields set to hostile values."""
    message = GetMessageClass(descriptor)()
    if descriptor.full_name == "google.protobuf.Timestamp":
        stamp = draw(timestamps())
        message.seconds, message.nanos = stamp["seconds"], stamp["nanos"]  # type: ignore[attr-defined]
        return message
    for field in descriptor.fields:
        if depth > 3 or not draw(st.booleans()):
            continue
        target = getattr(message, field.name)
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            key_field, value_field = sub.fields_by_name["key"], sub.fields_by_name["value"]
            for _ in range(draw(st.integers(0, 2))):
                key = draw(scalar(key_field, hints))
                if value_field.message_type is not None:
                    target[key].CopyFrom(draw(messages(value_field.message_type, hints, depth + 1)))
                else:
                    target[key] = draw(scalar(value_field, hints))
        elif field.is_repeated:
            for _ in range(draw(st.integers(0, 2))):
                if sub is not None:
                    target.add().CopyFrom(draw(messages(sub, hints, depth + 1)))
                else:
                    target.append(draw(scalar(field, hints)))
        elif sub is not None:
            target.CopyFrom(draw(messages(sub, hints, depth + 1)))
        else:
            setattr(message, field.name, draw(scalar(field, hints)))
    return message


def first_string_field(descriptor: Descriptor) -> int | None:
    return next(
        (f.number for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING), None
    )


def undecodable_bodies(descriptor: Descriptor) -> list[tuple[str, bytes]]:
    """Bodies no parser accepts as `descriptor`'s message: (what is wrong, bytes)."""
    bodies = [
        ("a stray end-group tag", b"\x0c"),
        ("a truncated varint", b"\x08\xff"),
        ("a length past the end", b"\x12\x10ab"),
        ("groups nested 200 deep", b"\xc3\x3e" * 200 + b"\xc4\x3e" * 200),  # field 1000
    ]
    number = first_string_field(descriptor)
    if number is not None and number < 16:
        bodies.append(("invalid UTF-8 in a string", bytes([number << 3 | 2, 1, 0xFF])))
    return bodies
