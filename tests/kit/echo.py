"""A tiny service for testing the kit at the level services meet it: real server, real port.

`Echo` answers with its input; some inputs make it fail the ways domain code fails.
"""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import wrappers_pb2
from loyalty_kit.access import ANY_CALLER
from loyalty_kit.errors import FieldViolation, InvalidArgument, NotFound
from loyalty_kit.server import ServiceContext, ServiceSpec

ECHO_SERVICE = "loyalty.test.v1.EchoService"
ECHO_METHOD = f"/{ECHO_SERVICE}/Echo"


async def echo(
    request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext
) -> wrappers_pb2.StringValue:
    text = request.value
    if text == "missing":
        raise NotFound(
            "member m-1 was not found", reason="MEMBER_NOT_FOUND", metadata={"member": "m-1"}
        )
    if text == "invalid":
        raise InvalidArgument.of(
            [
                FieldViolation("phone", "not a valid phone number"),
                FieldViolation("profile.birthday", "must be a past date"),
            ]
        )
    if text.startswith("crash"):
        raise RuntimeError("database password is hunter2; phone 13812345678")
    if text.startswith("slow:"):
        await asyncio.sleep(float(text.split(":", 1)[1]))
    if text == "deadline":
        remaining = context.time_remaining()
        return wrappers_pb2.StringValue(value=f"{remaining:.3f}")
    return wrappers_pb2.StringValue(value=text)


def add_echo(server: grpc.aio.Server, _context: ServiceContext) -> None:
    handler = grpc.method_handlers_generic_handler(
        ECHO_SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo,
                request_deserializer=wrappers_pb2.StringValue.FromString,
                response_serializer=wrappers_pb2.StringValue.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))


def echo_spec(name: str = "echo", uses_database: bool = True) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        service_names=(ECHO_SERVICE,),
        add_servicers=add_echo,
        migrations="loyalty_points:migrations" if uses_database else None,
        uses_database=uses_database,
        port=lambda _settings: 0,
        access={"Echo": ANY_CALLER},
    )


def echo_call(channel: grpc.aio.Channel):  # type: ignore[no-untyped-def]
    return channel.unary_unary(
        ECHO_METHOD,
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )
