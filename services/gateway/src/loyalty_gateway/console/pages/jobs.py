"""The console's jobs page (`/jobs`): member and order imports, bulk coupon issuances and the
stepped batch jobs (year-end, expiry, grant expiry, birthday gifts), with live progress.

The progress is an htmx fragment (`/jobs/live`) that asks for itself again every 2 s while
anything runs (`hx-trigger="every 2s"` on the fragment) and, once everything has ended, comes
back without the trigger, so the polling stops. No inline script.

Roles: a group admin sees every unit's imports and issuances, cancels a running member import
with a reason and starts a stepped job with a reason; a unit manager sees its own unit's imports
and issuances, read-only; customer service and analysts get a 403 page.

A stepped job runs in a background task of the gateway it was started on (console/runner.py,
the loop of `loyalty_admin.jobs.drive`), its run kept in the gateway's database
(adapters/job_runs.py): every replica lists the last runs, and a second run of a job is refused
while one of it runs on any replica. A run whose replica died (no heartbeat within the lease)
shows interrupted; a group admin resumes it with a reason, on whichever replica serves the
request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.message import Message
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.identity.v1 import member_import_pb2 as imports_pb
from loyalty.identity.v1 import member_import_pb2_grpc, order_import_pb2_grpc
from loyalty.identity.v1 import order_import_pb2 as orders_pb
from loyalty_admin.jobs import JOBS, STEP_DEADLINE_SECONDS
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from loyalty_gateway.adapters.job_runs import AlreadyRunning, JobRun
from loyalty_gateway.console import i18n
from loyalty_gateway.console.auth import form
from loyalty_gateway.console.backend import as_operator, channel_of
from loyalty_gateway.console.operators import Operator
from loyalty_gateway.console.render import (
    NavItem,
    console_of,
    operator_of,
    render,
    requires,
)
from loyalty_gateway.console.roles import GROUP, may
from loyalty_gateway.console.runner import Call, JobRunner

ACTION = "jobs"
RUN_ACTION = "jobs_run"  # cancel an import, start a stepped job: group admins
NAV = NavItem("jobs", "/jobs", ACTION)
POLL = "every 2s"
PAGE_SIZE = 20
LIST_DEADLINE_SECONDS = 10.0
# The stepped jobs offered (loyalty_admin.jobs.JOBS names), in the page's order.
STEPPED = ("year-end", "expiry", "grant-expiry", "birthday-gifts")
RUNS_SHOWN = 20  # the last runs listed
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


# The stepped jobs' runs (console/runner.py drives them; adapters/job_runs.py keeps them).


def runner_of(request: Request) -> JobRunner | None:
    runner: JobRunner | None = console_of(request).job_runs
    return runner


def _shown(run: JobRun, now: datetime, lease: timedelta) -> JobRun:
    """The run as the page shows it: running past its lease, it is interrupted."""
    return replace(run, state=run.shown(now, lease))


async def _runs(request: Request) -> list[JobRun]:
    runner = runner_of(request)
    if runner is None:
        return []
    now = console_of(request).clock()
    return [_shown(r, now, runner.store.lease) for r in await runner.store.listed(RUNS_SHOWN)]


def _stub(request: Request, service: str, stub: Any) -> Any:
    return stub(channel_of(console_of(request).backends, service))


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
    admin = may(operator.role, RUN_ACTION)
    unit = "" if operator.unit == GROUP else operator.unit
    options = {
        "metadata": as_operator(console_of(request).credentials, operator),
        "timeout": LIST_DEADLINE_SECONDS,
    }
    members = _stub(request, "identity", member_import_pb2_grpc.MemberImportServiceStub)
    orders = _stub(request, "identity", order_import_pb2_grpc.OrderImportServiceStub)
    benefits = _stub(request, "benefits", benefits_service_pb2_grpc.BenefitsServiceStub)
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
    runs = await _runs(request) if admin else []
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
        "admin": admin,
    }


@requires(ACTION)
async def jobs_page(request: Request) -> Response:
    context = await live_context(request)
    t = i18n.translator(i18n.language(request.cookies.get(i18n.COOKIE)))
    running = [r for r in context["member_imports"].rows if r.state == "running"]
    interrupted = [r for r in context["runs"] if r.state == "interrupted"]
    context.update(
        stepped_options=[(job, t(f"jobs.job.{job}")) for job in STEPPED],
        cancel_options=[(r.name, f"{r.name} · {r.unit} · {r.what}") for r in running],
        resume_options=[
            (
                r.run_id,
                f"{t('jobs.job.' + r.job)} · {r.as_of:%Y-%m-%d} · {r.started_at:%Y-%m-%d %H:%M}",
            )
            for r in interrupted
        ],
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
    members = _stub(request, "identity", member_import_pb2_grpc.MemberImportServiceStub)
    try:
        await members.CancelMemberImport(
            imports_pb.CancelMemberImportRequest(name=name),
            metadata=as_operator(console_of(request).credentials, operator, reason=reason),
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


def _caller(request: Request, operator: Operator, reason: str) -> Callable[[str], Call]:
    """How a run of a job calls its service's Run* RPC as the operator, with the reason."""
    console = console_of(request)

    def call_for(job: str) -> Call:
        spec = JOBS[job]
        method = getattr(_stub(request, spec.service, spec.stub), spec.method)

        async def call(message: Message) -> Message:
            # Fresh metadata each step: the operator's short token is renewed as the run goes.
            answer: Message = await method(
                message,
                metadata=as_operator(console.credentials, operator, reason=reason),
                timeout=STEP_DEADLINE_SECONDS,
            )
            return answer

        return call

    return call_for


@requires(RUN_ACTION)
async def start_run(request: Request) -> Response:
    """Starts a stepped job as the operator, with a reason, in a background task."""
    fields = form(await request.body())
    job, reason = fields.get("job", ""), _reason(fields)
    console = console_of(request)
    as_of = _as_of(fields.get("as_of", "").strip(), console.clock())
    runner = runner_of(request)
    if job not in STEPPED or not reason or as_of is None or runner is None:
        missing = "reason" if not reason else "job"
        return render(request, "jobs/invalid.html", {"missing": missing}, 400)
    operator = operator_of(request)
    call = _caller(request, operator, reason)(job)
    try:
        await runner.start(job, operator.operator_id, as_of, reason, call)
    except AlreadyRunning:
        return _back(request, refused="already-running")
    return _back(request, done="started")


@requires(RUN_ACTION)
async def resume_run(request: Request) -> Response:
    """Takes over an interrupted run (its gateway stopped) and drives it again, as the
    operator, with a reason."""
    fields = form(await request.body())
    run_id, reason = fields.get("run", ""), _reason(fields)
    runner = runner_of(request)
    if not run_id or not reason or runner is None:
        return render(request, "jobs/invalid.html", {"missing": "reason"}, 400)
    operator = operator_of(request)
    try:
        run = await runner.resume(
            run_id, operator.operator_id, reason, _caller(request, operator, reason)
        )
    except AlreadyRunning:
        return _back(request, refused="already-running")
    if run is None:
        return _back(request, refused="not-interrupted")
    return _back(request, done="resume")


ROUTES: list[BaseRoute] = [
    Route("/jobs", jobs_page, methods=["GET"]),
    Route("/jobs/live", jobs_live, methods=["GET"]),
    Route("/jobs/cancel", cancel_import, methods=["POST"]),
    Route("/jobs/run", start_run, methods=["POST"]),
    Route("/jobs/resume", resume_run, methods=["POST"]),
]
