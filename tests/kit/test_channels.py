"""Outbound calls: deadlines derived from the caller's, capped; retries on UNAVAILABLE; calls
spread round-robin over a target's addresses."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import wrappers_pb2
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.access import ANY_CALLER
from loyalty_kit.channels import channel, channel_to
from loyalty_kit.server import ServiceContext, ServiceSpec, connection_age_options
from loyalty_kit.settings import Settings

from tests.kit.echo import ECHO_SERVICE, echo_call, echo_spec

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


async def replica(name: str) -> tuple[grpc.aio.Server, int]:
    """A server answering every Echo with its own name: which replica took the call."""

    async def whoami(
        _request: wrappers_pb2.StringValue, _ctx: grpc.aio.ServicerContext
    ) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value=name)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                ECHO_SERVICE,
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(
                        whoami,
                        request_deserializer=wrappers_pb2.StringValue.FromString,
                        response_serializer=wrappers_pb2.StringValue.SerializeToString,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.mark.parametrize(
    ("load_balancing", "spread"), [("round_robin", {"a", "b"}), ("pick_first", None)]
)
async def test_calls_spread_over_every_address_of_the_target(
    monkeypatch: pytest.MonkeyPatch, load_balancing: str, spread: set[str] | None
) -> None:
    """A target resolving to several addresses (a headless Service's name: one per pod) gets
    its calls spread one by one under the default round_robin; pick_first keeps to one."""
    (a, port_a), (b, port_b) = await replica("a"), await replica("b")
    try:
        monkeypatch.setenv("LOYALTY_POINTS_TARGET", f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}")
        if load_balancing != "round_robin":
            monkeypatch.setenv("LOYALTY_GRPC_LOAD_BALANCING", load_balancing)
        settings = Settings()
        assert settings.grpc_load_balancing == load_balancing
        async with channel_to(settings, "points") as ch:

            async def who() -> str:
                answer: wrappers_pb2.StringValue = await echo_call(ch)(
                    wrappers_pb2.StringValue(value="?")
                )
                return answer.value

            # The first calls may all go to whichever connection was ready first.
            seen = [await who() for _ in range(20)]
            answers = [await who() for _ in range(10)]
        if spread is None:
            assert len(set(seen + answers)) == 1, seen + answers
        else:
            assert set(answers) == spread, answers
            assert answers.count("a") == answers.count("b") == 5, answers
    finally:
        await a.stop(None)
        await b.stop(None)


async def test_servers_close_connections_after_the_configured_age(
    services: ServiceRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller re-resolves its target when a connection closes: servers close theirs after
    LOYALTY_GRPC_MAX_CONNECTION_AGE_SECONDS, so new replicas are found without a restart."""
    assert connection_age_options(Settings()) == []
    monkeypatch.setenv("LOYALTY_GRPC_MAX_CONNECTION_AGE_SECONDS", "0.5")
    assert dict(connection_age_options(Settings()))["grpc.max_connection_age_ms"] == 500
    aged = services.settings.model_copy(update={"grpc_max_connection_age_seconds": 0.5})
    echo = await services.start(echo_spec(uses_database=False), aged)
    async with grpc.aio.insecure_channel(echo.target) as ch:
        await echo_call(ch)(wrappers_pb2.StringValue(value="first"))
        # The server sends GOAWAY after the age (plus jitter): the channel leaves READY.
        state = ch.get_state()
        assert state == grpc.ChannelConnectivity.READY
        async with asyncio.timeout(10):
            while state == grpc.ChannelConnectivity.READY:
                await ch.wait_for_state_change(state)
                state = ch.get_state()
        answer = await echo_call(ch)(wrappers_pb2.StringValue(value="again"))
        assert answer.value == "again"
