"""Connections that break under the services: killed by the server mid-load, or cut short by
a deadline in the middle of a statement. Calls meanwhile answer UNAVAILABLE (or their
deadline), never INTERNAL, and no broken or busy connection is used again."""

from __future__ import annotations

import asyncio

import pytest
from grpc_health.v1 import health_pb2

from tests.faults.calls import grpc_calls, outcome, phone, registered
from tests.faults.conftest import Suite

pytestmark = pytest.mark.asyncio(loop_scope="session")

SERVING = health_pb2.HealthCheckResponse.SERVING
OK = ("OK", "")
DATABASE_UNAVAILABLE = ("UNAVAILABLE", "DATABASE_UNAVAILABLE")


async def every_call_succeeds(suite: Suite, member: str, rounds: int = 3) -> None:
    for _ in range(rounds):
        answers = await asyncio.gather(*(outcome(call) for call in grpc_calls(suite, member)))
        assert {code for code, *_ in answers} == {"OK"}, answers


async def test_connections_the_server_terminates_under_load_answer_unavailable_then_recover(
    suite: Suite,
) -> None:
    member = await registered(suite, phone())
    stop = asyncio.Event()
    seen: list[tuple[str, str]] = []

    async def load() -> None:
        while not stop.is_set():
            answers = await asyncio.gather(*(outcome(call) for call in grpc_calls(suite, member)))
            seen.extend((code, reason) for code, reason, _ in answers)

    loads = [asyncio.create_task(load()) for _ in range(3)]
    killed = 0
    try:
        for _ in range(6):
            await asyncio.sleep(0.3)
            killed += await suite.terminate_connections()
    finally:
        stop.set()
        await asyncio.gather(*loads)

    assert killed > 0
    assert set(seen) <= {OK, DATABASE_UNAVAILABLE}, set(seen)
    assert OK in seen
    # No restart: closed connections are never handed out again.
    await asyncio.sleep(0.5)
    await every_call_succeeds(suite, member)
    for name in ("identity", "points", "tiers"):
        await suite.health_becomes(name, SERVING, within=15)


async def test_statements_cut_short_by_deadlines_leave_the_pool_usable(suite: Suite) -> None:
    """Each service has three pooled connections: the calls after the cancelled ones run on
    the very connections whose statements were cut short."""
    member = await registered(suite, phone())
    seen: set[str] = set()
    for timeout in (0.002, 0.005, 0.01, 0.02, 0.04, 0.08):
        for _ in range(3):
            answers = await asyncio.gather(
                *(outcome(call) for call in grpc_calls(suite, member, timeout=timeout) * 2)
            )
            seen.update(code for code, *_ in answers)
    assert "DEADLINE_EXCEEDED" in seen
    await every_call_succeeds(suite, member, rounds=5)
