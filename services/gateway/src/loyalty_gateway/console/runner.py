"""Driving the console's stepped batch jobs (year-end, expiry, grant expiry, birthday gifts)
in a background task of this gateway, with the loop of `loyalty_admin.jobs.drive`, the run kept
in the gateway's database (adapters/job_runs.py) so every replica shows it.

Each step writes the run's progress and heartbeat once. A resumed run is driven again from
where the services are (each step is idempotent): what was due then is counted again, on top
of what the run had done. When another replica took the run over, the old driver's write
misses and it stops quietly. Stopping the gateway marks its runs interrupted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import grpc
from google.protobuf.message import Message
from loyalty_admin.jobs import STEP_DEADLINE_SECONDS, counts, drive

from loyalty_gateway.adapters.job_runs import JobRun, JobRunStore

Call = Callable[[Message], Awaitable[Message]]
STEP = 2000  # members (grants) per step
# A running run with no heartbeat for this many step deadlines lost its gateway.
LEASE_STEPS = 3


def lease_of(step_deadline_seconds: float = STEP_DEADLINE_SECONDS) -> timedelta:
    return timedelta(seconds=LEASE_STEPS * step_deadline_seconds)


class TakenOver(Exception):
    """Another driver holds the run now (a resume after this one's lease ran out)."""


class JobRunner:
    def __init__(self, store: JobRunStore, clock: Callable[[], datetime], step: int = STEP) -> None:
        self.store = store
        self.clock = clock
        self.step = step
        self._tasks: dict[str, tuple[JobRun, asyncio.Task[None]]] = {}

    async def start(
        self, job: str, operator_id: str, as_of: datetime, reason: str, call: Call
    ) -> JobRun:
        """A new run of `job` driven in the background; AlreadyRunning if one of it runs on
        any replica."""
        run = await self.store.start(job, operator_id, as_of, reason, self.clock())
        self._drive_in_background(run, call)
        return run

    async def resume(
        self, run_id: str, operator_id: str, reason: str, call_for: Callable[[str], Call]
    ) -> JobRun | None:
        """Takes over an interrupted run and drives it again (`call_for(job)` calls the job's
        service); None when it is not there to take."""
        run = await self.store.resume(run_id, operator_id, reason, self.clock())
        if run is not None:
            self._drive_in_background(run, call_for(run.job))
        return run

    def _drive_in_background(self, run: JobRun, call: Call) -> None:
        task = asyncio.create_task(self.drive(run, call))
        self._tasks[run.run_id] = (run, task)
        task.add_done_callback(lambda _: self._tasks.pop(run.run_id, None))

    async def drive(self, run: JobRun, call: Call) -> None:
        done_before, due = run.done, 0

        async def step(request: Message) -> Message:
            nonlocal due
            answer: Message = await call(request)
            remaining = int(answer.remaining)  # type: ignore[attr-defined]
            if getattr(request, "validate_only", False):
                due = remaining
            else:
                for key, value in counts(answer).items():
                    run.counts[key] = run.counts.get(key, 0) + value
            run.remaining = remaining
            run.done = done_before + max(0, due - remaining)
            if not await self.store.progress(run, self.clock()):
                raise TakenOver(run.run_id)
            return answer

        try:
            outcome = await drive(run.job, step, as_of=run.as_of, step=self.step)
        except TakenOver:
            return
        except grpc.aio.AioRpcError as error:
            state, why = "failed", f"{error.code().name}: {error.details()}"
        except asyncio.CancelledError:
            raise
        except Exception as error:
            state, why = "failed", type(error).__name__
        else:
            state, why = ("failed", "stalled") if outcome.stalled else ("succeeded", "")
        await self.store.end(run, state, why, self.clock())

    async def close(self) -> None:
        """Stops this gateway's drivers; their runs end interrupted (resume them to finish)."""
        for run, task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await self.store.end(run, "interrupted", "the gateway stopped", self.clock())
