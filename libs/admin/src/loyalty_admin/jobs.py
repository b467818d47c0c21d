"""Running a scheduled job by hand, in steps, with a progress bar.

Each job is a service's Run* admin RPC (the work its scheduler does: chunked, idempotent, safe
to run again). `run_job` first asks what is due (`validate_only`), then calls the RPC with a
limit of one step's worth (`max_members`, `max_grants`) again and again until nothing is
`remaining` (birthday gifts walk their members by `page_token` until no `next_page_token` is
left), moving a bar from what each answer says is left. The time (`as_of`) is fixed when the
run starts, so every step works on the same due set.

Ctrl-C stops between steps: the first lets the step under way finish, a second abandons it (the
service rolls back the transaction it was in; what committed stays). Either way it says what
was done, and running the job again finishes it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from loyalty_admin.live import admin_metadata

# One step of a job walks a few transactions' worth; far longer than an ordinary call's
# deadline on a slow database, far shorter than the whole job.
STEP_DEADLINE_SECONDS = 3600.0
# A step is this many of the service's transactions (500 members each unless --chunk-size).
CHUNKS_PER_STEP = 4
DEFAULT_CHUNK_SIZE = 500
# What an answer says besides the job's counts.
PROGRESS_FIELDS = ("remaining", "next_page_token")


@dataclass(frozen=True)
class Job:
    service: str
    stub: type
    method: str
    request: type[Message]
    response: type[Message]
    what: str
    limit: str  # the request's limit per call, in the job's unit
    unit: str  # what the job counts through: members or grants
    due: str  # what `remaining` counts, in words


# The command line lists the same names: a test keeps them in step.
JOBS = {
    "expiry": Job(
        "points",
        points_service_pb2_grpc.PointsServiceStub,
        "RunExpiry",
        points_pb.RunExpiryRequest,
        points_pb.RunExpiryResponse,
        "expire points past their expiry",
        "max_members",
        "members",
        "members with points to expire",
    ),
    "pending-activation": Job(
        "points",
        points_service_pb2_grpc.PointsServiceStub,
        "RunPendingActivation",
        points_pb.RunPendingActivationRequest,
        points_pb.RunPendingActivationResponse,
        "make pending points whose period has passed available",
        "max_members",
        "members",
        "members with pending points due",
    ),
    "ledger-republish": Job(
        "points",
        points_service_pb2_grpc.PointsServiceStub,
        "RepublishLedger",
        points_pb.RepublishLedgerRequest,
        points_pb.RepublishLedgerResponse,
        "publish every member's ledger again, for a read side to catch up",
        "max_members",
        "members",
        "members whose ledger is still to publish",
    ),
    "year-end": Job(
        "tiers",
        tiers_service_pb2_grpc.TiersServiceStub,
        "RunYearEnd",
        tiers_pb.RunYearEndRequest,
        tiers_pb.RunYearEndResponse,
        "judge retention or downgrade of tier years that ended",
        "max_members",
        "members",
        "members whose tier year ended",
    ),
    "grant-expiry": Job(
        "tiers",
        tiers_service_pb2_grpc.TiersServiceStub,
        "RunGrantExpiry",
        tiers_pb.RunGrantExpiryRequest,
        tiers_pb.RunGrantExpiryResponse,
        "end tier grants and paid memberships whose time is up",
        "max_grants",
        "grants",
        "grants whose time is up",
    ),
    "birthday-gifts": Job(
        "benefits",
        benefits_service_pb2_grpc.BenefitsServiceStub,
        "RunBirthdayGifts",
        benefits_pb.RunBirthdayGiftsRequest,
        benefits_pb.RunBirthdayGiftsResponse,
        "grant the tier's birthday coupon to members whose birthday it is",
        "max_members",
        "members",
        "members celebrating their birthday",
    ),
}


def counts(response: Message) -> dict[str, int]:
    """The job's counts in an answer (not what is left)."""
    return {
        f.name: getattr(response, f.name)
        for f in response.DESCRIPTOR.fields
        if f.name not in PROGRESS_FIELDS
    }


@dataclass
class Outcome:
    """A run by hand: what was due when it started, what it did, what is left."""

    job: str
    as_of: datetime
    due: int
    counts: dict[str, int]
    remaining: int
    steps: int = 0
    interrupted: bool = False  # Ctrl-C
    stalled: bool = False  # a step left as much due as before (another runner holds it?)


class Interrupt:
    """Ctrl-C while a job runs: the first stops it after the step under way; a second abandons
    that step (its call is cancelled)."""

    def __init__(self, console: Console | None = None) -> None:
        self.requested = False
        self.abandoned = False
        self._console = console
        self._step: asyncio.Future[Message] | None = None

    def press(self) -> None:
        if self.requested:
            self.abandoned = True
            if self._step is not None:
                self._step.cancel()
            return
        self.requested = True
        if self._console is not None:
            self._console.print("stopping after this step (Ctrl-C again to abandon it)")

    async def step(self, call: Awaitable[Message]) -> Message | None:
        """The answer of one step's call; None if a second Ctrl-C abandoned it."""
        self._step = step = asyncio.ensure_future(call)
        try:
            return await step
        except asyncio.CancelledError:
            if self.abandoned and step.cancelled():
                return None
            raise
        finally:
            self._step = None

    @contextlib.contextmanager
    def on_sigint(self) -> Iterator[None]:
        """Ctrl-C presses this while the block runs (from the main thread only: elsewhere, as
        in a test, the default stays)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.press)
        except (NotImplementedError, RuntimeError, ValueError):
            yield
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)


class RateColumn(ProgressColumn):
    """Members (grants) per second: lately, or over the whole run (one step gives no trend)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.completed and task.elapsed:
            speed = task.completed / task.elapsed
        if speed is None:
            return Text("")
        shown = f"{speed:,.0f}/s" if speed >= 100 else f"{speed:.1f}/s"
        return Text(shown, style="progress.data.speed")


class JobProgress(Progress):
    """The bar on one line (fitting 80 columns), the job's counts so far on the next."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            if task.fields.get("counts"):
                yield Text(f"  {task.fields['counts']}", overflow="fold")


def progress_bar(console: Console) -> Progress:
    return JobProgress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        RateColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    )


Call = Callable[[Message], Awaitable[Message]]


def _request(job: Job, as_of: datetime, chunk_size: int, **fields: Any) -> Message:
    request = job.request()
    if "as_of" in request.DESCRIPTOR.fields_by_name:  # a job not tied to a time has none
        request.as_of.FromDatetime(as_of)  # type: ignore[attr-defined]
    if chunk_size and "chunk_size" in request.DESCRIPTOR.fields_by_name:
        request.chunk_size = chunk_size  # type: ignore[attr-defined]
    for name, value in fields.items():
        setattr(request, name, value)
    return request


async def count_due(job: Job, call: Call, *, as_of: datetime, chunk_size: int = 0) -> int:
    """What is due as of `as_of`; changes nothing."""
    answer = await call(_request(job, as_of, chunk_size, validate_only=True))
    return int(answer.remaining)  # type: ignore[attr-defined]


async def drive(
    name: str,
    call: Call,
    *,
    as_of: datetime,
    step: int,
    chunk_size: int = 0,
    interrupt: Interrupt | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Run job `name` through `call` in steps of at most `step` members (grants) until none is
    left, the time fixed at `as_of`; `progress` shows how far it got."""
    job = JOBS[name]
    interrupt = interrupt or Interrupt()
    progress = progress or JobProgress(disable=True)
    due = await count_due(job, call, as_of=as_of, chunk_size=chunk_size)
    outcome = Outcome(name, as_of, due, counts(job.response()), due)
    walks_pages = "page_token" in job.request.DESCRIPTOR.fields_by_name
    task = progress.add_task(name, total=due, unit=job.unit, counts="")
    page_token = ""
    while outcome.remaining > 0:
        if interrupt.requested:
            outcome.interrupted = True
            break
        limits: dict[str, Any] = {job.limit: step}
        if walks_pages:
            limits["page_token"] = page_token
        answer = await interrupt.step(call(_request(job, as_of, chunk_size, **limits)))
        if answer is None:
            outcome.interrupted = True
            break
        outcome.steps += 1
        for key, value in counts(answer).items():
            outcome.counts[key] += value
        before = outcome.remaining
        outcome.remaining = int(answer.remaining)  # type: ignore[attr-defined]
        progress.update(
            task,
            completed=max(0, due - outcome.remaining),
            counts=", ".join(f"{k} {v:,}" for k, v in outcome.counts.items()),
        )
        if walks_pages:
            page_token = answer.next_page_token  # type: ignore[attr-defined]
            if not page_token:
                break
        elif outcome.remaining >= before:
            outcome.stalled = True
            break
    return outcome


async def run_job(
    settings: Settings,
    name: str,
    *,
    as_of: datetime | None = None,
    chunk_size: int = 0,
    step: int = 0,
    dry_run: bool = False,
    console: Console | None = None,
) -> Outcome:
    """Job `name` against the running services, with a progress bar on `console` (standard
    error); with `dry_run` only what is due."""
    job = JOBS[name]
    as_of = as_of or datetime.now(UTC)
    step = step or CHUNKS_PER_STEP * (chunk_size or DEFAULT_CHUNK_SIZE)
    console = console or Console(stderr=True)
    async with channel(
        settings.target_of(job.service),
        default_deadline=STEP_DEADLINE_SECONDS,
        max_deadline=STEP_DEADLINE_SECONDS,
    ) as ch:
        method = getattr(job.stub(ch), job.method)
        metadata = admin_metadata(settings)

        async def call(request: Message) -> Message:
            answer: Message = await method(request, metadata=metadata)
            return answer

        if dry_run:
            due = await count_due(job, call, as_of=as_of, chunk_size=chunk_size)
            return Outcome(name, as_of, due, {}, due)
        interrupt = Interrupt(console)
        with interrupt.on_sigint(), progress_bar(console) as progress:
            return await drive(
                name,
                call,
                as_of=as_of,
                step=step,
                chunk_size=chunk_size,
                interrupt=interrupt,
                progress=progress,
            )


@dataclass
class Report:
    out: list[str] = field(default_factory=list)  # standard output: the counts
    err: list[str] = field(default_factory=list)  # standard error: why it stopped early
    code: int = 0


def report(outcome: Outcome, *, dry_run: bool = False) -> Report:
    """What the command prints, and its exit code: 0 done, 1 stalled, 130 stopped by Ctrl-C."""
    job = JOBS[outcome.job]
    when = outcome.as_of.isoformat(timespec="seconds")
    if dry_run:
        return Report([f"{outcome.job}: {outcome.due:,} {job.due} as of {when}; nothing changed"])
    done = ", ".join(f"{key} {value}" for key, value in outcome.counts.items())
    said = Report([f"{outcome.job}: {done}"])
    left = f"{outcome.remaining:,} of {outcome.due:,} {job.due} still due as of {when}"
    if outcome.interrupted:
        said.err.append(
            f"{outcome.job}: stopped by Ctrl-C after {outcome.steps} step(s); {left}. "
            "Run it again to finish (nothing done is done twice)"
        )
        said.code = 130
    elif outcome.stalled:
        said.err.append(
            f"{outcome.job}: the last step left as much due as before ({left}); another runner "
            "may be holding them. Run it again later to finish"
        )
        said.code = 1
    return said
