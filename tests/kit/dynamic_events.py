"""Event types made at test time, so kit tests need no test messages in the real contracts.

`event_type("svc3")` is a protobuf message `loyalty.svc3.v1.Happened { string note; int64 n; }`,
whose subject falls in the stream of a service named `svc3`.
"""

from __future__ import annotations

from functools import cache

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

_pool = descriptor_pool.DescriptorPool()


@cache
def event_type(service: str, name: str = "Happened") -> type[Message]:
    """`name` other than Happened: another type of the same shape on the same stream."""
    package = f"loyalty.{service}.v1"
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"test/{service}/{name.lower()}.proto", package=package, syntax="proto3"
    )
    message = proto.message_type.add(name=name)
    message.field.add(
        name="note",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    message.field.add(
        name="n",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    _pool.Add(proto)
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{package}.{name}"))
