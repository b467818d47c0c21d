"""Outbound calls: deadlines derived from the caller's, capped; retries on UNAVAILABLE."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import wrappers_pb2
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.access import ANY_CALLER
from loyalty_kit.channels import channel
from loyalty_kit.server import ServiceContext, ServiceSpec

from tests.kit.echo import echo_call, echo_spec

pytestmark = pytest.mark.asyncio(loop_scope="session")

RELAY_SERVICE = "loyalty.test.v1.RelayService"


def relay_spec(target: str) -> ServiceSpec:
    """A service whose only method asks the echo service how much time it was given."""

    def add(server: grpc.aio.Server, _context: ServiceContext) -> None:
        downstream = channel(target, default_deadline=5.0, max_deadline=30.0)

        async def ask(
            request: wrappers_pb2.StringValue, _ctx: grpc.aio.ServicerContext
        ) -> wrappers_pb2.StringValue:
            result: wrappers_pb2.StringValue = await echo_call(downstream)(request)
            return result

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    RELAY_SERVICE,
                    {
                        "Ask": grpc.unary_unary_rpc_method_handler(
                            ask,
                            request_deserializer=wrappers_pb2.StringValue.FromString,
                            response_serializer=wrappers_pb2.StringValue.SerializeToString,
                        )
                    },
                ),
            )
        )

    return ServiceSpec(
        name="relay",
        service_names=(RELAY_SERVICE,),
        add_servicers=add,
        uses_database=False,
        access={"Ask": ANY_CALLER},
    )


async def test_downstream_deadline_is_what_remains_of_the_callers(services: ServiceRunner) -> None:
    echo = await services.start(echo_spec(uses_database=False))
    relay = await services.start(relay_spec(echo.target))
    async with grpc.aio.insecure_channel(relay.target) as ch:
        ask = ch.unary_unary(
            f"/{RELAY_SERVICE}/Ask",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        answer = await ask(wrappers_pb2.StringValue(value="deadline"), timeout=0.8)
        assert 0.3 < float(answer.value) < 0.8
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ask(wrappers_pb2.StringValue(value="slow:2"), timeout=0.5)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_calls_outside_a_request_get_the_default_deadline(services: ServiceRunner) -> None:
    echo = await services.start(echo_spec(uses_database=False))
    async with channel(echo.target, default_deadline=0.7, max_deadline=30) as ch:
        answer = await echo_call(ch)(wrappers_pb2.StringValue(value="deadline"))
        assert 0.3 < float(answer.value) <= 0.7
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await echo_call(ch)(wrappers_pb2.StringValue(value="slow:2"))
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


class FlakyEcho:
    """Says UNAVAILABLE to the first two attempts, then answers."""

    def __init__(self) -> None:
        self.attempts = 0

    async def __call__(
        self, request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext
    ) -> wrappers_pb2.StringValue:
        self.attempts += 1
        if self.attempts <= 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return request


async def test_unavailable_is_retried(services: ServiceRunner) -> None:
    flaky = FlakyEcho()

    def add(server: grpc.aio.Server, _context: ServiceContext) -> None:
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "loyalty.test.v1.EchoService",
                    {
                        "Echo": grpc.unary_unary_rpc_method_handler(
                            flaky,
                            request_deserializer=wrappers_pb2.StringValue.FromString,
                            response_serializer=wrappers_pb2.StringValue.SerializeToString,
                        )
                    },
                ),
            )
        )

    spec = ServiceSpec(
        name="flaky",
        service_names=(),
        add_servicers=add,
        uses_database=False,
        access={"Echo": ANY_CALLER},
    )
    service = await services.start(spec)
    async with channel(service.target) as ch:
        answer = await echo_call(ch)(wrappers_pb2.StringValue(value="hello"))
    assert answer.value == "hello"
    assert flaky.attempts == 3
