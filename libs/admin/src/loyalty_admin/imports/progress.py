"""An import as an operator watches it: a progress bar fed by GetMemberImport polls (percent of
the file's bytes read, rows read, the counts so far, the rate and the time left, as the service
reckons them), and the lines that describe it once it has ended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Column

from loyalty_admin.imports.kinds import Kind, Resource

POLL_SECONDS = 0.5
# How long following rides out the service being unreachable (a replica restarting; the import
# is taken over from its last chunk) before it gives up.
UNREACHABLE_SECONDS = 120.0
RUNNING = "RUNNING"
ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")
# Counters on the bar beside rows read (the others when not zero): the summary has them all.
ON_THE_BAR = {"created", "linked", "candidates", "imported", "unknown_member", "rejected"}


def state_of(found: Resource) -> str:
    """`SUCCEEDED`: the import's state without its enum's prefix."""
    field = found.DESCRIPTOR.fields_by_name["state"]
    number = found.state
    value = field.enum_type.values_by_number.get(number)
    return str(value.name).removeprefix("STATE_") if value is not None else str(number)


def ended(found: Resource) -> bool:
    return state_of(found) in ENDED


def progress_bar(console: Console) -> Progress:
    """The upload's bar (bytes sent) and the import's (bytes read, rows and counts): one line
    each, the text of each task in its fields."""
    return Progress(
        TextColumn("{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=24),
        TextColumn("{task.percentage:>3.0f}%"),
        # Wrapped under itself in a narrow terminal, never cut short.
        TextColumn("{task.fields[detail]}", table_column=Column(overflow="fold")),
        console=console,
        transient=False,
    )


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


def bar_text(kind: Kind, found: Resource) -> str:
    """What the import's bar says beside it: rows, the counts so far, rate and time left."""
    progress = found.progress
    parts = [f"{progress.rows_read:,} rows"]
    parts += [
        f"{label} {getattr(progress, field):,}"
        for field, label in kind.counters
        if field in ON_THE_BAR or getattr(progress, field)
    ]
    if progress.rows_per_second:
        parts.append(f"{progress.rows_per_second:,.0f} rows/s")
    if state_of(found) == RUNNING and progress.eta_seconds:
        parts.append(f"eta {_duration(progress.eta_seconds)}")
    elif state_of(found) != RUNNING:
        parts.append(state_of(found))
    return " · ".join(parts)


def show(progress: Progress, task: TaskID, kind: Kind, found: Resource) -> None:
    figures = found.progress
    total = max(int(found.file_bytes), 1)
    done = total * min(max(figures.percent, 0.0), 100.0) / 100.0
    if state_of(found) == "SUCCEEDED":
        done = total
    progress.update(task, total=total, completed=done, detail=bar_text(kind, found))


async def follow(
    kind: Kind,
    name: str,
    get: Callable[[], Awaitable[Resource]],
    progress: Progress,
    *,
    poll_seconds: float = POLL_SECONDS,
    first: Resource | None = None,
) -> Resource:
    """Poll the import until it ends, its bar kept current; the import as it ended."""
    found = first if first is not None else await get()
    label = found.spec.file_name or name
    task = progress.add_task(f"importing {label}", total=None, detail="")
    unreachable_since: float | None = None
    while True:
        show(progress, task, kind, found)
        if ended(found):
            return found
        await asyncio.sleep(poll_seconds)
        try:
            found = await get()
            unreachable_since = None
        except grpc.aio.AioRpcError as error:
            if error.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                raise
            now = time.monotonic()
            unreachable_since = unreachable_since or now
            if now - unreachable_since > UNREACHABLE_SECONDS:
                raise
            progress.update(task, detail="the identity service does not answer; trying again")


def summary(kind: Kind, found: Resource) -> list[str]:
    """The import in a few lines: its state, the file, every count, and where to look next."""
    name = found.name
    spec = found.spec
    progress = found.progress
    lines = [f"{name}: {state_of(found)}"]
    created, ended_at = found.create_time, found.end_time
    took = ""
    if created.seconds and ended_at.seconds:
        took = f" in {_duration(ended_at.seconds - created.seconds)}"
    lines.append(
        f"  unit {spec.unit}, file {spec.file_name or '-'} "
        f"({found.file_bytes:,} bytes, sha256 {found.file_sha256[:12]})"
    )
    lines.append(f"  {progress.rows_read:,} rows read ({progress.percent:.1f}% of the file){took}")
    lines.append(
        "  " + ", ".join(f"{label} {getattr(progress, f):,}" for f, label in kind.counters)
    )
    if "legacy_points" in progress.DESCRIPTOR.fields_by_name and progress.legacy_points:
        lines.append(f"  legacy points carried over {progress.legacy_points:,}")
    if found.file_kept:
        lines.append("  the file is kept")
    error = found.error
    if error.code or error.message:
        lines.append(f"  error: {error.message}")
    return lines


def hints(kind: Kind, found: Resource) -> list[str]:
    """Commands to look further."""
    name = found.name
    progress = found.progress
    lines = []
    if progress.rejected:
        lines.append(f"  rejected rows: loyalty-admin imports rows {name} --outcome rejected")
    if getattr(progress, "candidates", 0):
        lines.append(f"  merge candidates: loyalty-admin imports candidates --import {name}")
    if state_of(found) == RUNNING:
        lines.append(f"  follow it: loyalty-admin imports follow {name}")
        lines.append(f"  cancel it: loyalty-admin imports cancel {name}")
    if state_of(found) in ("FAILED", "CANCELLED"):
        lines.append("  import the same file again to finish it (rows already in stay as they are)")
    return lines
