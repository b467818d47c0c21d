"""The console's runs of the stepped batch jobs in the gateway's database (`console_job_runs`,
migration 0006), seen alike by every gateway replica.

A run is written when it starts, once after each step (done, remaining, counts and the
heartbeat `updated_at`: one UPDATE per step, not per member) and when it ends. At most one run
of a job is `running` (a partial unique index): a start that meets one is refused
(`AlreadyRunning`). A running run whose heartbeat is older than the lease lost its replica: it
is shown `interrupted`, and a resume takes it over with a conditional UPDATE (one replica wins)
that raises its `attempt`; the writes of the driver it was taken from name the old attempt and
change nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from loyalty_kit.db import driver_connection
from loyalty_kit.uow import UnitOfWork

STATES = ("running", "succeeded", "failed", "interrupted")
COLUMNS = (
    "run_id, job, as_of, operator_id, reason, state, done, remaining, counts, error, attempt, "
    "resumed_by, resume_reason, started_at, updated_at, ended_at"
)


class AlreadyRunning(Exception):
    """A run of the job is running (on this replica or another)."""


@dataclass
class JobRun:
    run_id: str
    job: str
    as_of: datetime
    operator_id: str
    reason: str
    started_at: datetime
    updated_at: datetime
    state: str = "running"
    done: int = 0
    remaining: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""
    attempt: int = 1
    resumed_by: str = ""
    resume_reason: str = ""
    ended_at: datetime | None = None

    @property
    def percent(self) -> int:
        if self.state == "succeeded":
            return 100
        total = self.done + self.remaining
        return int(100 * self.done / total) if total else 0

    def stale(self, now: datetime, lease: timedelta) -> bool:
        """Running, but its driver has not written for longer than the lease."""
        return self.state == "running" and now - self.updated_at > lease

    def shown(self, now: datetime, lease: timedelta) -> str:
        """Its state as the page shows it: a stale running run is interrupted."""
        return "interrupted" if self.stale(now, lease) else self.state


def _run(row: Any) -> JobRun:
    found = row["counts"]
    counted = json.loads(found) if isinstance(found, str) else dict(found or {})
    return JobRun(
        run_id=str(row["run_id"]),
        job=row["job"],
        as_of=row["as_of"],
        operator_id=row["operator_id"],
        reason=row["reason"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        state=row["state"],
        done=int(row["done"]),
        remaining=int(row["remaining"]),
        counts={str(k): int(v) for k, v in counted.items()},
        error=row["error"],
        attempt=int(row["attempt"]),
        resumed_by=row["resumed_by"],
        resume_reason=row["resume_reason"],
        ended_at=row["ended_at"],
    )


class JobRunStore:
    """The runs, through the gateway's units of work; `lease` is how long a running run may go
    without a heartbeat before it counts as interrupted."""

    def __init__(self, uow: Callable[[], UnitOfWork], lease: timedelta) -> None:
        self.uow = uow
        self.lease = lease

    async def start(
        self, job: str, operator_id: str, as_of: datetime, reason: str, now: datetime
    ) -> JobRun:
        """A new running run of `job`; AlreadyRunning if one of it runs. A stale running run of
        the job is marked interrupted first (its replica died): the new run replaces it."""
        run = JobRun(str(uuid.uuid4()), job, as_of, operator_id, reason, now, now)
        try:
            async with self.uow() as uow:
                conn = await driver_connection(uow.session)
                await conn.execute(
                    "UPDATE console_job_runs SET state = 'interrupted', ended_at = $2 "
                    "WHERE job = $1 AND state = 'running' AND updated_at < $3",
                    job,
                    now,
                    now - self.lease,
                )
                await conn.execute(
                    "INSERT INTO console_job_runs (run_id, job, as_of, operator_id, reason, "
                    "state, started_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'running', $6, $6)",
                    uuid.UUID(run.run_id),
                    job,
                    as_of,
                    operator_id,
                    reason,
                    now,
                )
                await uow.commit()
        except asyncpg.UniqueViolationError as error:
            raise AlreadyRunning(job) from error
        return run

    async def progress(self, run: JobRun, now: datetime) -> bool:
        """Writes the run's progress and heartbeat; False when another driver took it over (or
        it ended)."""
        run.updated_at = now
        async with self.uow() as uow:
            conn = await driver_connection(uow.session)
            status = await conn.execute(
                "UPDATE console_job_runs SET done = $3, remaining = $4, counts = $5::jsonb, "
                "updated_at = $6 WHERE run_id = $1 AND attempt = $2 AND state = 'running'",
                uuid.UUID(run.run_id),
                run.attempt,
                run.done,
                run.remaining,
                json.dumps(run.counts, sort_keys=True),
                now,
            )
            await uow.commit()
        return bool(status.endswith(" 1"))

    async def end(self, run: JobRun, state: str, error: str, now: datetime) -> bool:
        """Ends the run (succeeded, failed or interrupted) with its last progress; False when
        another driver holds it."""
        assert state in STATES and state != "running", state
        run.state, run.error, run.updated_at, run.ended_at = state, error, now, now
        async with self.uow() as uow:
            conn = await driver_connection(uow.session)
            status = await conn.execute(
                "UPDATE console_job_runs SET state = $3, error = $4, done = $5, remaining = $6, "
                "counts = $7::jsonb, updated_at = $8, ended_at = $8 "
                "WHERE run_id = $1 AND attempt = $2 AND state = 'running'",
                uuid.UUID(run.run_id),
                run.attempt,
                state,
                error[:1000],
                run.done,
                run.remaining,
                json.dumps(run.counts, sort_keys=True),
                now,
            )
            await uow.commit()
        return bool(status.endswith(" 1"))

    async def resume(
        self, run_id: str, operator_id: str, reason: str, now: datetime
    ) -> JobRun | None:
        """Takes over an interrupted run (or a running one past its lease) for a new driver;
        None when there is no such run to take (another replica took it first, or it runs).
        AlreadyRunning if another run of its job runs meanwhile."""
        try:
            key = uuid.UUID(run_id)
        except ValueError:
            return None
        try:
            async with self.uow() as uow:
                conn = await driver_connection(uow.session)
                row = await conn.fetchrow(
                    "UPDATE console_job_runs SET state = 'running', attempt = attempt + 1, "
                    "updated_at = $2, ended_at = NULL, error = '', resumed_by = $3, "
                    "resume_reason = $4 WHERE run_id = $1 AND (state = 'interrupted' OR "
                    f"(state = 'running' AND updated_at < $5)) RETURNING {COLUMNS}",
                    key,
                    now,
                    operator_id,
                    reason,
                    now - self.lease,
                )
                await uow.commit()
        except asyncpg.UniqueViolationError as error:
            raise AlreadyRunning(run_id) from error
        return None if row is None else _run(row)

    async def get(self, run_id: str) -> JobRun | None:
        async with self.uow() as uow:
            conn = await driver_connection(uow.session)
            row = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM console_job_runs WHERE run_id = $1", uuid.UUID(run_id)
            )
        return None if row is None else _run(row)

    async def listed(self, limit: int) -> list[JobRun]:
        """The last `limit` runs, newest first."""
        async with self.uow() as uow:
            conn = await driver_connection(uow.session)
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM console_job_runs "
                "ORDER BY started_at DESC, run_id DESC LIMIT $1",
                limit,
            )
        return [_run(r) for r in rows]
