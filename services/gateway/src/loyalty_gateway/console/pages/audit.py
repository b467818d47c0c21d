"""The console's audit page (`/audit`, group admins only): the audit log newest first, filtered
by member or other target, operator, method and time, a page at a time (htmx "more" appends the
next page's rows), each entry's who, when, what, why, outcome, before and after. The whole
filtered log downloads as CSV or JSON Lines (`/audit/export`, a POST with the CSRF token: the
same rows as the HTTP export, and the download is itself an audit entry).

The console's own entries (sign-in, failed sign-in, lock-out, sign-out, unmasking, export,
refusals, programme applies) are written by console/journal.py. Personal data is never stored in
clear, so none is ever shown: entries name operators and members by id only.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from loyalty_gateway.adapters.audit_log import AuditFilter, AuditLog, AuditRow
from loyalty_gateway.console.auth import form
from loyalty_gateway.console.journal import EXPORT, write
from loyalty_gateway.console.render import NavItem, console_of, render, requires
from loyalty_gateway.http.audit_export import FORMATS, lines

NAV = NavItem("audit", "/audit", "audit")
PAGE_SIZE = 50
FILTERS = ("target", "operator", "method", "start", "end")
TIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")

# Reading the log.


@dataclass(frozen=True)
class Chosen:
    """The page's filters as typed (shown back in the form) and as the log reads them."""

    typed: dict[str, str]
    filter: AuditFilter
    problems: list[str]


def _moment(text: str) -> datetime | None:
    for pattern in TIME_FORMATS:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(text)


def chosen(values: Any) -> Chosen:
    typed = {k: str(values.get(k, "")).strip()[:200] for k in FILTERS}
    problems: list[str] = []
    times: dict[str, datetime | None] = {}
    for key in ("start", "end"):
        try:
            times[key] = _moment(typed[key]) if typed[key] else None
        except ValueError:
            problems.append(key)
            times[key] = None
    start, end = times["start"], times["end"]
    if start and end and end <= start:
        problems.append("end")
    return Chosen(
        typed,
        AuditFilter(
            target=typed["target"].removeprefix("members/"),
            operator_id=typed["operator"],
            method=typed["method"],
            start=start,
            end=end,
        ),
        problems,
    )


def _position(text: str) -> tuple[datetime, str] | None:
    """The position after which a page starts (`<at>|<entry id>`), None if unreadable."""
    at, _, entry_id = text.partition("|")
    try:
        uuid.UUID(entry_id)
        found = datetime.fromisoformat(at)
    except ValueError:
        return None
    return (found, entry_id) if found.tzinfo else None


def _json_text(text: str) -> str:
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False)
    except ValueError:
        return text


@dataclass(frozen=True)
class Shown:
    entry_id: str
    at: str
    who: str
    client: str
    unit: str
    what: str
    target: str
    why: str
    outcome: str
    before: str
    after: str
    request: str


def shown(row: AuditRow) -> Shown:
    return Shown(
        entry_id=row.entry_id,
        at=row.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        who=row.operator_id,
        client=row.client_id,
        unit=row.unit,
        what=f"{row.service}.{row.method}",
        target=row.target,
        why=row.reason,
        outcome=row.outcome,
        before=_json_text(row.before),
        after=_json_text(row.after),
        request=_json_text(row.request),
    )


def _log(request: Request) -> AuditLog:
    log: AuditLog = console_of(request).audit_log
    return log


async def _rows(request: Request, picked: Chosen) -> tuple[list[Shown], str]:
    after = _position(request.query_params.get("after", ""))
    rows, more = await _log(request).page(picked.filter, PAGE_SIZE, after)
    following = f"{rows[-1].at.isoformat()}|{rows[-1].entry_id}" if more and rows else ""
    return [shown(r) for r in rows], following


@requires("audit")
async def audit_page(request: Request) -> Response:
    picked = chosen(request.query_params)
    entries: list[Shown] = []
    following = ""
    if not picked.problems:
        entries, following = await _rows(request, picked)
    return render(
        request,
        "audit/audit.html",
        {
            "typed": picked.typed,
            "problems": picked.problems,
            "entries": entries,
            "following": following,
            "formats": list(FORMATS),
        },
        400 if picked.problems else 200,
    )


@requires("audit")
async def audit_rows(request: Request) -> Response:
    """The next page's rows and its own "more" row (htmx swaps them in for the old one)."""
    picked = chosen(request.query_params)
    if picked.problems:
        return render(request, "audit/invalid.html", {}, 400)
    entries, following = await _rows(request, picked)
    return render(
        request,
        "audit/rows.html",
        {"typed": picked.typed, "entries": entries, "following": following},
    )


@requires("audit")
async def audit_export(request: Request) -> Response:
    """The filtered log downloaded through the console's session, after its own entry."""
    console = console_of(request)
    fields = form(await request.body())
    kind = fields.get("format", "csv")
    picked = chosen(fields)
    if kind not in FORMATS or picked.problems:
        return render(request, "audit/invalid.html", {}, 400)
    session = request.scope["state"]["console_session"]
    await write(
        console,
        EXPORT,
        operator=session.operator,
        request={"format": kind, **{k: v for k, v in picked.typed.items() if v}},
    )
    name = f"audit-log.{kind}"
    return StreamingResponse(
        lines(_log(request), picked.filter, kind),
        media_type=FORMATS[kind],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


ROUTES: list[BaseRoute] = [
    Route("/audit", audit_page, methods=["GET"]),
    Route("/audit/rows", audit_rows, methods=["GET"]),
    Route("/audit/export", audit_export, methods=["POST"]),
]
