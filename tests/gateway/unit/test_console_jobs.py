"""The console's stepped job runs (pages/jobs.py `Runs`): a run drives the job's steps until
nothing remains, recording done and remaining; a second run of a job is refused while one runs;
a failing step shows as failed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_gateway.console.pages.jobs import AlreadyRunning, Run, Runs

NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def ended(run: Run) -> Run:
    loop = asyncio.get_running_loop()
    ends = loop.time() + 5
    while run.state == "running":
        assert loop.time() < ends, run
        await asyncio.sleep(0)
    return run


def expiry(remaining: list[int], gate: asyncio.Event | None = None) -> Any:
    async def call(request: Message) -> Message:
        if gate is not None:
            await gate.wait()
        if getattr(request, "validate_only", False):
            return points_pb.RunExpiryResponse(remaining=remaining[0])
        remaining.pop(0)
        return points_pb.RunExpiryResponse(remaining=remaining[0], members_expired=10)

    return call


@pytest.mark.asyncio
async def test_a_run_steps_until_nothing_remains() -> None:
    runs = Runs(lambda: NOW)
    run = runs.start("expiry", "op-1", NOW, "monthly", expiry([30, 20, 10, 0]))
    await ended(run)
    assert (run.state, run.due, run.done, run.remaining, run.steps) == ("succeeded", 30, 30, 0, 3)
    assert run.percent == 100
    assert run.counts.get("members_expired") == 30


@pytest.mark.asyncio
async def test_a_second_run_of_a_running_job_is_refused() -> None:
    runs = Runs(lambda: NOW)
    gate = asyncio.Event()
    first = runs.start("expiry", "op-1", NOW, "monthly", expiry([1, 0], gate))
    with pytest.raises(AlreadyRunning):
        runs.start("expiry", "op-2", NOW, "again", expiry([0]))
    other = runs.start("year-end", "op-2", NOW, "another job", expiry([0]))
    assert runs.running()
    gate.set()
    await ended(first)
    assert first.state == "succeeded"
    assert other.state in ("running", "succeeded", "failed")
    again = runs.start("expiry", "op-2", NOW, "after", expiry([0]))
    await ended(again)
    assert again.state == "succeeded"
    await runs.close()


@pytest.mark.asyncio
async def test_a_refused_step_shows_as_failed() -> None:
    async def refused(request: Message) -> Message:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="admin only",
        )

    runs = Runs(lambda: NOW)
    run = await ended(runs.start("expiry", "op-1", NOW, "monthly", refused))
    assert run.state == "failed" and "PERMISSION_DENIED" in run.error
