"""Rate limits across gateway replicas: in memory each replica counts alone; with
LOYALTY_GATEWAY_RATE_LIMIT_STORAGE=redis://... every replica counts into one window.

The shared case runs against the Redis at 127.0.0.1:6379 when one answers there (skipped
otherwise); nothing else here needs Redis."""

from __future__ import annotations

import socket
import uuid

import pytest
from loyalty_gateway.http.contracts import RateLimits
from loyalty_gateway.settings import GatewaySettings
from loyalty_kit.errors import ResourceExhausted
from pydantic import ValidationError

asyncio = pytest.mark.asyncio(loop_scope="session")
REDIS = ("127.0.0.1", 6379)


def redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def admitted(replicas: list[RateLimits], claims: dict[str, object], calls: int) -> int:
    """How many of `calls` requests, sent to the replicas in turn, get through."""
    passed = 0
    for index in range(calls):
        try:
            await replicas[index % len(replicas)].hit(claims)
            passed += 1
        except ResourceExhausted as refused:
            assert refused.reason == "RATE_LIMITED"
    return passed


def claims(rate: int) -> dict[str, object]:
    return {"sub": f"test-{uuid.uuid4().hex}", "rps": rate}


@asyncio
async def test_in_memory_each_replica_counts_alone() -> None:
    assert GatewaySettings().rate_limit_storage == "memory://"
    replicas = [RateLimits(), RateLimits()]
    assert await admitted(replicas, claims(3), 10) == 6


@asyncio
@pytest.mark.skipif(not redis_answers(), reason="no Redis answers on 127.0.0.1:6379")
async def test_with_redis_every_replica_counts_into_one_window() -> None:
    uri = f"redis://{REDIS[0]}:{REDIS[1]}/0"
    assert GatewaySettings(rate_limit_storage=uri).rate_limit_storage == uri
    replicas = [RateLimits(uri), RateLimits(uri), RateLimits(uri)]
    assert await admitted(replicas, claims(3), 10) == 3


@asyncio
async def test_an_unreachable_storage_lets_requests_through() -> None:
    """A Redis outage must not turn every request away: the limit is a guard, not a gate."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    replicas = [RateLimits(f"redis://127.0.0.1:{port}/0")]
    assert await admitted(replicas, claims(1), 3) == 3


@pytest.mark.parametrize("uri", ["mysql://db", "redis", "", "memcached://x:11211"])
def test_unknown_storages_are_refused_at_start(uri: str) -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(rate_limit_storage=uri)
