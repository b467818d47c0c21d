"""A tiny echo service on the kit (after tests/kit/echo.py): `Echo` answers with its input."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.wrappers_pb2 import StringValue
from loyalty_kit.access import ANY_CALLER
from loyalty_kit.server import ServiceContext, ServiceSpec

ECHO_SERVICE = "loyalty.bench.v1.EchoService"
ECHO_METHOD = f"/{ECHO_SERVICE}/Echo"


async def echo(
    request: StringValue,
    _context: grpc.aio.ServicerContext[StringValue, StringValue],
) -> StringValue:
    return StringValue(value=request.value)


def unary_handler(
    service: str, method: str, behaviour: Any, request_type: Any, response_type: Any
) -> grpc.GenericRpcHandler[Any, Any]:
    """A bare grpc.aio handler of one unary method: what the raw ceilings serve."""
    return grpc.method_handlers_generic_handler(
        service,
        {
            method: grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )
        },
    )


def echo_handler() -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        ECHO_SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo,
                request_deserializer=StringValue.FromString,
                response_serializer=StringValue.SerializeToString,
            )
        },
    )


def add_echo(server: grpc.aio.Server, _context: ServiceContext) -> None:
    server.add_generic_rpc_handlers((echo_handler(),))


def echo_spec(name: str = "echo") -> ServiceSpec:
    """No database and no events: what is measured is the kit's gRPC layer."""
    return ServiceSpec(
        name=name,
        service_names=(ECHO_SERVICE,),
        add_servicers=add_echo,
        uses_database=False,
        publishes_events=False,
        port=lambda _settings: 0,
        access={"Echo": ANY_CALLER},
    )


def echo_call(
    channel: grpc.aio.Channel,
) -> grpc.aio.UnaryUnaryMultiCallable[StringValue, StringValue]:
    return channel.unary_unary(
        ECHO_METHOD,
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )
