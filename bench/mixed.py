"""A mixed load: random requests for every unary method of a gRPC service, built from the
contracts' descriptors, as a fuzzer sends them (random strings, ids, identity types, ladder and
tier names, extreme numbers; now and then a string of up to 1 MB or a list of 1,000 items:
large requests are what a service's memory has to give back), sprinkled with values the
services know (the demo's members, units, tiers), so some calls succeed and most are refused
in every possible way.

Used by the soak scenario; nothing here knows one service from another.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

INT_EXTREMES = (0, 1, -1, 2, 10, 100, 1000, 2**31 - 1, -(2**31), 2**53, 2**63 - 1, -(2**63))
UINT_EXTREMES = (0, 1, 2, 10, 100, 2**31, 2**32 - 1, 2**64 - 1)
ODD_STRINGS = (
    "",
    " ",
    "0",
    "-1",
    "null",
    "\u0000",
    "a\u0000b",
    "é",
    "会员",
    "🙂" * 20,
    "x" * 300,
    "'; DROP TABLE members; --",
    "%s%n",
    "../../etc/passwd",
    "1e309",
    "NaN",
    "-0.00",
    "99999999999999999999.99",
    "2026-02-30T25:61:00Z",
)
BIG_SIZES = (1_000, 10_000, 100_000, 1_000_000)  # long strings, within gRPC's 4 MB
LONG_LISTS = (100, 1_000)  # long repeated fields
UNITS = ("mall", "hotel", "cinema", "property", "group")
TIERS = ("basic", "silver", "gold", "platinum")
IDENTITY_TYPES = ("phone", "email", "wechat_openid", "card", "alipay_uid")


def _random_text(rng: random.Random, longest: int = 40) -> str:
    alphabet = string.ascii_letters + string.digits + "-_ ./:@+"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, longest)))


@dataclass
class Vocabulary:
    """Values the mixed load draws from besides random ones: what makes some calls valid."""

    member_ids: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)

    def member_id(self, rng: random.Random) -> str:
        if self.member_ids and rng.random() < 0.5:
            return rng.choice(self.member_ids)
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def string_for(self, name: str, rng: random.Random) -> str:
        """A value for a string field called `name`: known, plausible, random or odd."""
        roll = rng.random()
        if roll < 0.02:
            return "x" * rng.choice(BIG_SIZES)
        if roll < 0.1:
            return rng.choice(ODD_STRINGS)
        if roll < 0.25:
            return _random_text(rng)
        if name in ("member", "survivor", "absorbed", "name", "parent") or name.endswith("_member"):
            return f"members/{self.member_id(rng)}"
        if name.endswith("member_id"):
            return self.member_id(rng)
        if name in ("unit", "units"):
            return rng.choice(UNITS)
        if name in ("tier", "code", "entry_tier", "target_tier") or name.endswith("_tier"):
            return rng.choice(TIERS) if rng.random() < 0.7 else _random_text(rng, 12)
        if name == "type" or name.endswith("identity_type"):
            return rng.choice(IDENTITY_TYPES) if rng.random() < 0.6 else _random_text(rng, 16)
        if name == "value" and self.phones and rng.random() < 0.5:
            return rng.choice(self.phones)
        if name in ("request_id", "order_id") or name.endswith("_id"):
            return uuid.uuid4().hex
        if name == "currency_code":
            return rng.choice(("CNY", "CNY", "USD", "XXX", ""))
        if name == "amount":
            return rng.choice(("0", "1.00", "123.45", "5000.00", "-1", "1e9", "abc"))
        if name == "page_token":
            return rng.choice(("", "", _random_text(rng)))
        return _random_text(rng)


def random_message(
    descriptor: Descriptor, vocabulary: Vocabulary, rng: random.Random, depth: int = 0
) -> Message:
    message: Any = GetMessageClass(descriptor)()
    fields: list[Any] = list(descriptor.fields)  # FieldDescriptor (its stubs say Optional)
    for fd in fields:
        if rng.random() < 0.25:
            continue  # left unset
        repeated = fd.is_repeated
        count = rng.choice((0, 1, 1, 2, 3)) if repeated else 1
        if repeated and rng.random() < 0.03:
            count = rng.choice(LONG_LISTS)
        for _ in range(count):
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                if depth >= 4:
                    break
                if fd.message_type.GetOptions().map_entry:
                    key = vocabulary.string_for("key", rng)
                    value_fd = fd.message_type.fields_by_name["value"]
                    if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                        getattr(message, fd.name)[key].CopyFrom(
                            random_message(value_fd.message_type, vocabulary, rng, depth + 1)
                        )
                    else:
                        getattr(message, fd.name)[key] = _scalar(value_fd, vocabulary, rng)
                    continue
                child = random_message(fd.message_type, vocabulary, rng, depth + 1)
                if repeated:
                    getattr(message, fd.name).add().CopyFrom(child)
                else:
                    getattr(message, fd.name).CopyFrom(child)
            else:
                value = _scalar(fd, vocabulary, rng)
                if repeated:
                    getattr(message, fd.name).append(value)
                else:
                    setattr(message, fd.name, value)
    made: Message = message
    return made


def _scalar(fd: Any, vocabulary: Vocabulary, rng: random.Random) -> Any:
    kind = fd.type
    if kind == FieldDescriptor.TYPE_STRING:
        return vocabulary.string_for(fd.name, rng)
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.randint(0, 64))
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in fd.enum_type.values]
        return rng.choice(values) if rng.random() < 0.9 else rng.randint(-5, 1000)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice((0.0, 1.5, -1.0, 1e308, -1e308, float("inf"), float("nan")))
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return rng.choice(UINT_EXTREMES[:6])
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return rng.choice(UINT_EXTREMES)
    if kind in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return rng.choice(INT_EXTREMES[:9]) if rng.random() < 0.7 else rng.randint(-100, 10_000)
    return rng.choice(INT_EXTREMES) if rng.random() < 0.7 else rng.randint(-100, 10_000)


@dataclass
class UnaryMethod:
    path: str  # /package.Service/Method
    input: Descriptor
    call: Any  # channel.unary_unary multicallable


def unary_methods(channel: grpc.aio.Channel, services: Sequence[Any]) -> list[UnaryMethod]:
    """Every unary method of the given service descriptors, callable on `channel`."""
    found: list[UnaryMethod] = []
    for service in services:
        for method in service.methods:
            assert isinstance(method, MethodDescriptor)
            if method.client_streaming or method.server_streaming:
                continue
            path = f"/{service.full_name}/{method.name}"
            output = GetMessageClass(method.output_type)
            found.append(
                UnaryMethod(
                    path,
                    method.input_type,
                    channel.unary_unary(
                        path,
                        request_serializer=lambda m: m.SerializeToString(),
                        response_deserializer=output.FromString,
                    ),
                )
            )
    return found
