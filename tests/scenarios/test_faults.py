"""The faults the scenarios inject: the kill-after-commit hook's counting, and the TCP proxy's
latency, silent connections and resets, against a plain echo server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from loyalty_devstack.proxy import TcpProxy
from loyalty_kit.faults import KillAfterCommit


def test_the_hook_is_due_at_the_nth_commit_of_its_method_only() -> None:
    hook = KillAfterCommit.parse("EarnPoints:3")
    scopes = [
        "loyalty.points.v1.PointsService/EarnPoints:mall-pos",
        "loyalty.points.v1.PointsService/RedeemPoints:mall-pos",
        "loyalty.points.v1.PointsService/EarnPoints:hotel-pms",
        "loyalty.points.v1.PointsService/EarnPointsLater:x",
        "loyalty.points.v1.PointsService/EarnPoints:mall-pos",
        "loyalty.points.v1.PointsService/EarnPoints:mall-pos",
    ]
    assert [hook.due(scope) for scope in scopes] == [False, False, False, False, True, False]


@pytest.mark.parametrize("value", ["EarnPoints", "EarnPoints:0", ":3", "EarnPoints:x"])
def test_a_malformed_hook_setting_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="LOYALTY_FAULT_KILL_AFTER_COMMIT"):
        KillAfterCommit.parse(value)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


# Another loopback address than the services': a client of a server another test stopped keeps
# retrying its old port on 127.0.0.1, and would be counted here when that port is the proxy's.
LISTEN = "127.0.0.7"


@pytest_asyncio.fixture(loop_scope="session")
async def proxy() -> AsyncIterator[TcpProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    upstream = server.sockets[0].getsockname()[1]
    made = await TcpProxy("127.0.0.1", upstream, seed=1, listen=LISTEN).start()
    yield made
    await made.close()
    server.close()


async def _round_trip(proxy: TcpProxy, timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection(LISTEN, proxy.port)
    try:
        writer.write(b"ping")
        await writer.drain()
        return await asyncio.wait_for(reader.read(4), timeout)
    finally:
        writer.close()


async def test_the_proxy_forwards_both_ways(proxy: TcpProxy) -> None:
    assert await _round_trip(proxy) == b"ping"


async def test_latency_is_added_each_way(proxy: TcpProxy) -> None:
    proxy.latency = 0.2
    began = time.perf_counter()
    assert await _round_trip(proxy) == b"ping"
    assert time.perf_counter() - began >= 0.4


async def test_a_dropped_connection_is_accepted_and_never_answered(proxy: TcpProxy) -> None:
    proxy.drop = 1.0
    with pytest.raises(TimeoutError):
        await _round_trip(proxy, timeout=0.5)
    assert proxy.dropped == 1
    proxy.drop = 0.0
    assert await _round_trip(proxy) == b"ping"


async def test_open_connections_are_reset(proxy: TcpProxy) -> None:
    reader, writer = await asyncio.open_connection(LISTEN, proxy.port)
    writer.write(b"ping")
    await writer.drain()
    assert await reader.read(4) == b"ping"
    assert proxy.reset_open() == 1
    with pytest.raises(ConnectionResetError):
        writer.write(b"more")
        await writer.drain()
        if not await reader.read(4):
            raise ConnectionResetError("closed")  # some kernels report the RST as an EOF
    writer.close()
