"""The console's jobs page (`/jobs`): member and order imports, bulk coupon issuances and the
stepped batch jobs (year-end, expiry, grant expiry, birthday gifts), with live progress.

The progress is an htmx fragment (`/jobs/live`) that asks for itself again every 2 s while
anything runs (`hx-trigger="every 2s"` on the fragment) and, once everything has ended, comes
back without the trigger, so the polling stops. No inline script.

Roles: a group admin sees every unit's imports and issuances, cancels a running member import
with a reason and starts a stepped job with a reason; a unit manager sees its own unit's imports
and issuances, read-only; customer service and analysts get a 403 page.

A stepped job runs in a background task of this gateway process with the loop of
`loyalty_admin.jobs.drive` (what is due first, then steps until nothing is `remaining`), its
progress (done, remaining, counts) kept in memory by run id (`Runs`): another replica does not
see it, and a restart forgets it (running the job again finishes it: each step is idempotent).
A second run of a job is refused while one of it runs in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.message import Message
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.identity.v1 import member_import_pb2 as imports_pb
from loyalty.identity.v1 import member_import_pb2_grpc, order_import_pb2_grpc
from loyalty.identity.v1 import order_import_pb2 as orders_pb
from loyalty_admin.jobs import JOBS, STEP_DEADLINE_SECONDS, counts, drive
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from loyalty_gateway.console.auth import form
from loyalty_gateway.console.backend import REASON_HEADER, operator_caller, operator_metadata
from loyalty_gateway.console.operators import Operator
from loyalty_gateway.console.render import (
    Console,
    NavItem,
    console_of,
    operator_of,
    render,
    requires,
)
from loyalty_gateway.console.roles import GROUP, may

ACTION = "jobs"
RUN_ACTION = "jobs_run"  # cancel an import, start a stepped job: group admins
NAV = NavItem("jobs", "/jobs", ACTION)
POLL = "every 2s"
PAGE_SIZE = 20
LIST_DEADLINE_SECONDS = 10.0
# The stepped jobs offered (loyalty_admin.jobs.JOBS names), in the page's order.
STEPPED = ("year-end", "expiry", "grant-expiry", "birthday-gifts")
STEP = 2000  # members (grants) per step
MAX_REASON = 500

_IMPORT_STATES = {
    imports_pb.MemberImport.STATE_RUNNING: "running",
    imports_pb.MemberImport.STATE_SUCCEEDED: "succeeded",
    imports_pb.MemberImport.STATE_FAILED: "failed",
    imports_pb.MemberImport.STATE_CANCELLED: "cancelled",
}
_ISSUANCE_STATES = {
    benefits_pb.COUPON_ISSUANCE_STATE_RUNNING: "running",
    benefits_pb.COUPON_ISSUANCE_STATE_SUCCEEDED: "succeeded",
}


# Stepped jobs run by this process.


@dataclass
class Run:
    run_id: str
    job: str
    operator_id: str
    as_of: datetime
    reason: str
    started_at: datetime
    updated_at: datetime
    state: str = "running"  # running, succeeded, stalled, failed
    due: int = 0
    remaining: int = 0
    steps: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def done(self) -> int:
        return max(0, self.due - self.remaining)

    @property
    def percent(self) -> int:
        if self.state == "succeeded":
            return 100
        return int(100 * self.done / self.due) if self.due else 0


class AlreadyRunning(Exception):
    """A run of the job is under way in this process."""


Caller = Callable[[Message], Any]


class Runs:
    """The stepped jobs' runs of this process, by run id (newest first when listed)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._runs: dict[str, Run] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def listed(self) -> list[Run]:
        return sorted(self._runs.values(), key=lambda r: r.started_at, reverse=True)

    def running(self) -> bool:
        return any(r.state == "running" for r in self._runs.values())

    def start(self, job: str, operator_id: str, as_of: datetime, reason: str, call: Caller) -> Run:
        """A new run of `job` in a background task; AlreadyRunning if one of it runs."""
        if any(r.job == job and r.state == "running" for r in self._runs.values()):
            raise AlreadyRunning(job)
        now = self._clock()
        run = Run(str(uuid.uuid4()), job, operator_id, as_of, reason, now, now)
        self._runs[run.run_id] = run
        task = asyncio.create_task(self._drive(run, call))
        self._tasks[run.run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run.run_id, None))
        return run

    async def _drive(self, run: Run, call: Caller) -> None:
        async def step(request: Message) -> Message:
            answer: Message = await call(request)
            if getattr(request, "validate_only", False):
                run.due = run.remaining = int(answer.remaining)  # type: ignore[attr-defined]
            else:
                run.steps += 1
                for key, value in counts(answer).items():
                    run.counts[key] = run.counts.get(key, 0) + value
                run.remaining = int(answer.remaining)  # type: ignore[attr-defined]
            run.updated_at = self._clock()
            return answer

        try:
            outcome = await drive(run.job, step, as_of=run.as_of, step=STEP)
        except grpc.aio.AioRpcError as error:
            run.state, run.error = "failed", f"{error.code().name}: {error.details()}"
        except Exception as error:
            run.state, run.error = "failed", type(error).__name__
        else:
            run.state = "stalled" if outcome.stalled else "succeeded"
        run.updated_at = self._clock()

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def runs_of(request: Request) -> Runs:
    state = request.app.state
    found: Runs | None = getattr(state, "job_runs", None)
    if found is None:
        found = Runs(console_of(request).clock)
        state.job_runs = found
    return found


# Calling the services as the operator.


def _metadata(console: Console, operator: Operator, reason: str = "") -> tuple[Any, ...]:
    if console.credentials is None:
        found: tuple[Any, ...] = tuple(operator_caller(operator).metadata())
        return found + (((REASON_HEADER, reason.encode()),) if reason else ())
    return operator_metadata(console.credentials, operator, reason=reason)


def _channel(request: Request, service: str) -> grpc.aio.Channel:
    channel: grpc.aio.Channel = console_of(request).backends.channels[service]
    return channel


# What the page shows.


@dataclass(frozen=True)
class Row:
    kind: str  # member, order, issuance
    name: str
    unit: str
    what: str  # the file's name, or the template and tag
    state: str
    percent: int
    rate: str
    eta: str
    counts: tuple[tuple[str, int], ...]  # (what, how many): `jobs.count.<what>` names it
    started: str
    error: str


def _when(stamp: Any) -> str:
    if not stamp.seconds:
        return ""
    moment: datetime = stamp.ToDatetime(tzinfo=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value else ""


def _eta(seconds: int, state: str) -> str:
    if state != "running" or seconds <= 0:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _counts(message: Any, names: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    return tuple((n, int(getattr(message, n))) for n in names)


def member_row(found: imports_pb.MemberImport) -> Row:
    p = found.progress
    state = _IMPORT_STATES.get(found.state, "unknown")
    return Row(
        "member",
        found.name,
        found.spec.unit,
        found.spec.file_name,
        state,
        int(p.percent),
        _rate(p.rows_per_second),
        _eta(p.eta_seconds, state),
        _counts(
            p, ("rows_read", "created", "linked", "unchanged", "candidates", "merged", "rejected")
        ),
        _when(found.create_time),
        found.error.message,
    )


def order_row(found: orders_pb.OrderImport) -> Row:
    p = found.progress
    state = _IMPORT_STATES.get(found.state, "unknown")
    return Row(
        "order",
        found.name,
        found.spec.unit,
        found.spec.file_name,
        state,
        int(p.percent),
        _rate(p.rows_per_second),
        _eta(p.eta_seconds, state),
        _counts(p, ("rows_read", "imported", "unknown_member", "duplicates", "rejected")),
        _when(found.create_time),
        found.error.message,
    )


def issuance_row(found: benefits_pb.CouponIssuance) -> Row:
    state = _ISSUANCE_STATES.get(found.state, "failed" if found.failure_reason else "unknown")
    return Row(
        "issuance",
        found.name,
        found.issuer_unit,
        f"{found.template} → {found.tag}",
        state,
        int(found.progress_percent),
        "",
        "",
        _counts(found, ("processed_members", "total_members", "issued_coupons")),
        _when(found.create_time),
        found.failure_message or found.failure_reason,
    )


@dataclass
class Listed:
    rows: list[Row] = field(default_factory=list)
    available: bool = True


async def _listed(fetch: Any, rows_of: Callable[[Any], list[Row]]) -> Listed:
    try:
        return Listed(rows_of(await fetch))
    except grpc.aio.AioRpcError:
        return Listed([], False)


async def live_context(request: Request) -> dict[str, Any]:
    operator = operator_of(request)
    unit = "" if operator.unit == GROUP else operator.unit
    metadata = _metadata(console_of(request), operator)
    options = {"metadata": metadata, "timeout": LIST_DEADLINE_SECONDS}
    members = member_import_pb2_grpc.MemberImportServiceStub(_channel(request, "identity"))
    orders = order_import_pb2_grpc.OrderImportServiceStub(_channel(request, "identity"))
    benefits = benefits_service_pb2_grpc.BenefitsServiceStub(_channel(request, "benefits"))
    member_imports, order_imports, issuances = await asyncio.gather(
        _listed(
            members.ListMemberImports(
                imports_pb.ListMemberImportsRequest(unit=unit, page_size=PAGE_SIZE), **options
            ),
            lambda a: [member_row(i) for i in a.member_imports],
        ),
        _listed(
            orders.ListOrderImports(
                orders_pb.ListOrderImportsRequest(unit=unit, page_size=PAGE_SIZE), **options
            ),
            lambda a: [order_row(i) for i in a.order_imports],
        ),
        _listed(
            benefits.ListCouponIssuances(
                benefits_pb.ListCouponIssuancesRequest(page_size=PAGE_SIZE), **options
            ),
            lambda a: [issuance_row(i) for i in a.coupon_issuances],
        ),
    )
    runs = runs_of(request).listed() if may(operator.role, RUN_ACTION) else []
    running = any(r.state == "running" for r in runs) or any(
        row.state == "running"
        for listed in (member_imports, order_imports, issuances)
        for row in listed.rows
    )
    return {
        "member_imports": member_imports,
        "order_imports": order_imports,
        "issuances": issuances,
        "runs": runs,
        "running": running,
        "poll": POLL,
        "admin": may(operator.role, RUN_ACTION),
    }


@requires(ACTION)
async def jobs_page(request: Request) -> Response:
    context = await live_context(request)
    context.update(
        stepped=STEPPED,
        done=request.query_params.get("done", ""),
        refused=request.query_params.get("refused", ""),
        today=console_of(request).clock().astimezone(UTC).strftime("%Y-%m-%d"),
    )
    return render(request, "jobs/page.html", context)


@requires(ACTION)
async def jobs_live(request: Request) -> Response:
    return render(request, "jobs/live.html", await live_context(request))


def _reason(fields: dict[str, str]) -> str:
    return fields.get("reason", "").strip()[:MAX_REASON]


def _back(request: Request, **query: str) -> Response:
    base = request.scope.get("root_path", "")
    shown = "&".join(f"{k}={v}" for k, v in query.items())
    return RedirectResponse(f"{base}/jobs?{shown}#jobs-live", status_code=303)


@requires(RUN_ACTION)
async def cancel_import(request: Request) -> Response:
    """Cancels a running member import, with the operator's reason (the identity service
    audits it)."""
    fields = form(await request.body())
    name, reason = fields.get("name", ""), _reason(fields)
    if not name.startswith("memberImports/") or not reason:
        return render(request, "jobs/invalid.html", {"missing": "reason"}, 400)
    operator = operator_of(request)
    members = member_import_pb2_grpc.MemberImportServiceStub(_channel(request, "identity"))
    try:
        await members.CancelMemberImport(
            imports_pb.CancelMemberImportRequest(name=name),
            metadata=_metadata(console_of(request), operator, reason),
            timeout=LIST_DEADLINE_SECONDS,
        )
    except grpc.aio.AioRpcError as error:
        return _back(request, refused=error.code().name)
    return _back(request, done="cancel")


def _as_of(text: str, now: datetime) -> datetime | None:
    if not text:
        return now
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


@requires(RUN_ACTION)
async def start_run(request: Request) -> Response:
    """Starts a stepped job as the operator, with a reason, in a background task."""
    fields = form(await request.body())
    job, reason = fields.get("job", ""), _reason(fields)
    console = console_of(request)
    as_of = _as_of(fields.get("as_of", "").strip(), console.clock())
    if job not in STEPPED or not reason or as_of is None:
        missing = "reason" if not reason else "job"
        return render(request, "jobs/invalid.html", {"missing": missing}, 400)
    operator = operator_of(request)
    spec = JOBS[job]
    stub = spec.stub(_channel(request, spec.service))
    method = getattr(stub, spec.method)

    async def call(message: Message) -> Message:
        # Fresh metadata each step: the operator's short token is renewed as the run goes on.
        answer: Message = await method(
            message,
            metadata=_metadata(console, operator, reason),
            timeout=STEP_DEADLINE_SECONDS,
        )
        return answer

    try:
        runs_of(request).start(job, operator.operator_id, as_of, reason, call)
    except AlreadyRunning:
        return _back(request, refused="already-running")
    return _back(request, done="started")


ROUTES: list[BaseRoute] = [
    Route("/jobs", jobs_page, methods=["GET"]),
    Route("/jobs/live", jobs_live, methods=["GET"]),
    Route("/jobs/cancel", cancel_import, methods=["POST"]),
    Route("/jobs/run", start_run, methods=["POST"]),
]
