"""Unary gRPC echo: a bare grpc.aio server (the ceiling) against the kit's server.

Client and server share the process and its event loop; every scenario here sends the same
StringValue with `--concurrency` calls in flight over one channel.
"""

from __future__ import annotations

import grpc
from google.protobuf import wrappers_pb2
from loyalty_kit import channels
from loyalty_kit.server import start_service

from bench.context import BenchContext
from bench.echo import echo_call, echo_handler, echo_spec
from bench.registry import Measurement, scenario

REQUEST = wrappers_pb2.StringValue(value="member m-0001 says hello")


async def _drive(ctx: BenchContext, channel: grpc.aio.Channel) -> Measurement:
    call = echo_call(channel)
    await channel.channel_ready()

    async def once() -> None:
        reply = await call(REQUEST)
        if reply.value != REQUEST.value:
            raise AssertionError(f"echo answered {reply.value!r}")

    return await ctx.closed_loop(once, unit="calls")


@scenario("raw-grpc-echo")
async def raw_grpc_echo(ctx: BenchContext) -> Measurement:
    """Ceiling: bare grpc.aio server and channel, no kit, no interceptors."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((echo_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return await _drive(ctx, channel)
    finally:
        await server.stop(0)


@scenario("kit-grpc-echo", ceiling="raw-grpc-echo")
async def kit_grpc_echo(ctx: BenchContext) -> Measurement:
    """The kit's server (start_service: interceptor, access log, health), bare client.

    The kit logs every call (JSON, --log-level), as services do; the log goes to results/.
    """
    service = await start_service(echo_spec(), ctx.settings(nats_url=""), port=0)
    try:
        await service.wait_until_serving()
        async with grpc.aio.insecure_channel(service.target) as channel:
            measured = await _drive(ctx, channel)
        measured.extra["client"] = "bare grpc.aio channel"
        return measured
    finally:
        await service.stop(grace=0.5)


@scenario("kit-grpc-echo-channel", ceiling="raw-grpc-echo")
async def kit_grpc_echo_channel(ctx: BenchContext) -> Measurement:
    """The kit's server called through the kit's client channel (deadlines, retry policy)."""
    settings = ctx.settings(nats_url="")
    service = await start_service(echo_spec(), settings, port=0)
    try:
        await service.wait_until_serving()
        channel = channels.channel(
            service.target,
            default_deadline=settings.default_deadline_seconds,
            max_deadline=settings.max_deadline_seconds,
        )
        async with channel:
            measured = await _drive(ctx, channel)
        measured.extra["client"] = "loyalty_kit.channels.channel"
        return measured
    finally:
        await service.stop(grace=0.5)
