"""Server reflection answers under v1 (what current clients ask first) and v1alpha alike."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.reflection import V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME

from tests.kit.echo import ECHO_SERVICE, echo_spec

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEALTH = "grpc.health.v1.Health"


def v1_message(name: str) -> type[Message]:
    """A v1 reflection message class, from the descriptor the kit registers (no v1alpha code)."""
    descriptor = descriptor_pool.Default().FindMessageTypeByName(f"grpc.reflection.v1.{name}")
    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls


async def ask(channel: grpc.aio.Channel, service: str, **request: str) -> Message:
    request_type = v1_message("ServerReflectionRequest")
    response_type = v1_message("ServerReflectionResponse")
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    responses: list[Message] = [r async for r in call(iter([request_type(**request)]))]
    assert len(responses) == 1
    return responses[0]


@pytest.mark.parametrize("service_name", [V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
async def test_reflection_lists_the_services_under_both_versions(
    services: ServiceRunner, service_name: str
) -> None:
    service = await services.start(echo_spec(uses_database=False))
    async with grpc.aio.insecure_channel(service.target) as channel:
        answer = await ask(channel, service_name, list_services="")
    names = {s.name for s in answer.list_services_response.service}  # type: ignore[attr-defined]
    assert {ECHO_SERVICE, HEALTH, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME} <= names


async def test_v1_describes_a_service_and_itself(services: ServiceRunner) -> None:
    service = await services.start(echo_spec(uses_database=False))
    async with grpc.aio.insecure_channel(service.target) as channel:
        for symbol, package in (
            (HEALTH, "grpc.health.v1"),
            (V1_SERVICE_NAME, "grpc.reflection.v1"),
        ):
            answer = await ask(channel, V1_SERVICE_NAME, file_containing_symbol=symbol)
            files = answer.file_descriptor_response.file_descriptor_proto  # type: ignore[attr-defined]
            protos = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
            assert package in {p.package for p in protos}, symbol
    (own,) = (p for p in protos if p.package == "grpc.reflection.v1")
    (method,) = own.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
