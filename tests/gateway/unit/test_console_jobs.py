"""The console's stepped job runs (console/runner.py `JobRunner` on a store kept in memory here,
adapters/job_runs.py's in the database): a run drives the job's steps until nothing remains,
writing done and remaining once per step; a second run of a job is refused while one runs; a
failing step shows as failed; a run taken over by another driver stops writing; a running run
past its lease shows interrupted, and a resumed one counts on from what it had done."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_gateway.adapters.job_runs import AlreadyRunning, JobRun
from loyalty_gateway.console import i18n
from loyalty_gateway.console.pages.jobs import Listed
from loyalty_gateway.console.render import environment
from loyalty_gateway.console.runner import JobRunner, lease_of

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LEASE = timedelta(minutes=5)


class MemoryStore:
    """The store's contract in memory: one running run per job, writes by the holding attempt."""

    def __init__(self) -> None:
        self.lease = LEASE
        self.rows: dict[str, JobRun] = {}
        self.writes = 0

    async def start(
        self, job: str, operator_id: str, as_of: datetime, reason: str, now: datetime
    ) -> JobRun:
        if any(r.job == job and r.state == "running" for r in self.rows.values()):
            raise AlreadyRunning(job)
        run = JobRun(str(uuid.uuid4()), job, as_of, operator_id, reason, now, now)
        self.rows[run.run_id] = dataclasses.replace(run)
        return run

    def _holds(self, run: JobRun) -> bool:
        row = self.rows[run.run_id]
        return row.state == "running" and row.attempt == run.attempt

    async def progress(self, run: JobRun, now: datetime) -> bool:
        self.writes += 1
        if not self._holds(run):
            return False
        self.rows[run.run_id] = dataclasses.replace(run, counts=dict(run.counts), updated_at=now)
        return True

    async def end(self, run: JobRun, state: str, error: str, now: datetime) -> bool:
        if not self._holds(run):
            return False
        run.state, run.error = state, error
        self.rows[run.run_id] = dataclasses.replace(run, counts=dict(run.counts))
        return True

    async def resume(
        self, run_id: str, operator_id: str, reason: str, now: datetime
    ) -> JobRun | None:
        row = self.rows.get(run_id)
        if row is None or row.shown(now, self.lease) != "interrupted":
            return None
        taken = dataclasses.replace(
            row, state="running", attempt=row.attempt + 1, updated_at=now, counts=dict(row.counts)
        )
        self.rows[run_id] = dataclasses.replace(taken, counts=dict(taken.counts))
        return taken


def runner(store: MemoryStore, clock: Any = lambda: NOW) -> JobRunner:
    return JobRunner(store, clock)  # type: ignore[arg-type]


async def ended(store: MemoryStore, run_id: str) -> JobRun:
    loop = asyncio.get_running_loop()
    ends = loop.time() + 5
    while store.rows[run_id].state == "running":
        assert loop.time() < ends, store.rows[run_id]
        await asyncio.sleep(0)
    return store.rows[run_id]


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
async def test_a_run_steps_until_nothing_remains_writing_once_per_step() -> None:
    store = MemoryStore()
    started = await runner(store).start("expiry", "op-1", NOW, "monthly", expiry([30, 20, 10, 0]))
    run = await ended(store, started.run_id)
    assert (run.state, run.done, run.remaining, run.percent) == ("succeeded", 30, 0, 100)
    assert run.counts.get("members_expired") == 30
    assert store.writes == 4  # what is due, then one per step


@pytest.mark.asyncio
async def test_a_second_run_of_a_running_job_is_refused() -> None:
    store = MemoryStore()
    runs = runner(store)
    gate = asyncio.Event()
    first = await runs.start("expiry", "op-1", NOW, "monthly", expiry([1, 0], gate))
    with pytest.raises(AlreadyRunning):
        await runs.start("expiry", "op-2", NOW, "again", expiry([0]))
    other = await runs.start("year-end", "op-2", NOW, "another job", expiry([0]))
    gate.set()
    assert (await ended(store, first.run_id)).state == "succeeded"
    assert (await ended(store, other.run_id)).state == "succeeded"
    again = await runs.start("expiry", "op-2", NOW, "after", expiry([0]))
    assert (await ended(store, again.run_id)).state == "succeeded"


@pytest.mark.asyncio
async def test_a_refused_step_shows_as_failed() -> None:
    async def refused(request: Message) -> Message:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="admin only",
        )

    store = MemoryStore()
    started = await runner(store).start("expiry", "op-1", NOW, "monthly", refused)
    run = await ended(store, started.run_id)
    assert run.state == "failed" and "PERMISSION_DENIED" in run.error


@pytest.mark.asyncio
async def test_a_stale_run_shows_interrupted_and_a_resume_counts_on_from_it() -> None:
    store = MemoryStore()
    times = [NOW]
    runs = runner(store, lambda: times[0])
    gate = asyncio.Event()
    remaining = [30, 20, 10, 0]
    held = await runs.start("expiry", "op-1", NOW, "monthly", expiry(remaining, gate))
    store.rows[held.run_id] = dataclasses.replace(store.rows[held.run_id], done=10, remaining=20)
    assert store.rows[held.run_id].shown(NOW + LEASE / 2, LEASE) == "running"
    times[0] = NOW + LEASE * 2
    assert store.rows[held.run_id].shown(times[0], LEASE) == "interrupted"

    taken = await runs.resume(held.run_id, "op-2", "its gateway died", lambda job: expiry([20, 0]))
    assert taken is not None and taken.attempt == 2
    run = await ended(store, held.run_id)
    assert (run.state, run.done, run.remaining) == ("succeeded", 30, 0)
    # The first driver wakes up to find the run taken over: it writes nothing more.
    writes = store.writes
    gate.set()
    loop = asyncio.get_running_loop()
    ends = loop.time() + 5
    while store.writes == writes:  # its write of what is due, refused
        assert loop.time() < ends
        await asyncio.sleep(0)
    assert store.rows[held.run_id].state == "succeeded" and store.rows[held.run_id].done == 30
    assert await runs.resume(held.run_id, "op-3", "again", lambda job: expiry([0])) is None


def test_the_lease_is_three_step_deadlines() -> None:
    assert lease_of(60.0) == timedelta(minutes=3)


def test_the_page_offers_interrupted_runs_for_resuming_and_lists_them() -> None:
    stale = JobRun("run-1", "expiry", NOW, "op-1", "monthly", NOW, NOW, state="interrupted")
    stale.done, stale.remaining = 10, 30
    page = (
        environment()
        .get_template("jobs/page.html")
        .render(
            t=i18n.translator("en"),
            lang="en",
            langs=i18n.LANGS,
            base="/console",
            csrf="token",
            session=None,
            operator=None,
            nav=[],
            here="/jobs",
            member_imports=Listed(),
            order_imports=Listed(),
            issuances=Listed(),
            runs=[stale],
            running=False,
            poll="every 2s",
            admin=True,
            stepped_options=[("expiry", "Points expiry")],
            cancel_options=[],
            resume_options=[("run-1", "Points expiry · 2026-06-01")],
            done="",
            refused="",
            today="2026-06-01",
        )
    )
    assert '<option value="run-1">Points expiry · 2026-06-01</option>' in page
    assert 'id="resume-reason"' in page and 'id="cancel-none"' in page
    assert 'data-run="run-1" data-state="interrupted"' in page
    assert "hx-trigger" not in page  # nothing runs: no polling
