"""The console's programme page (`/console/programme`): the live programme file, a new one
reviewed against it (its problems at their lines, the changes per section with before and
after), and applied after a confirmation that carries the review's digest.

Only a group admin has the page (the `programme` action): every other role gets the 403 page,
for reading the live file too, since it is the whole of the group's commercial terms.

Apply reviews the submitted text again as the operator and hands `loyalty_admin.review.apply`
the digest the confirmation carried: when the live programme changed since the review (or the
digest is not the review's) it raises `Stale`, nothing is applied, and the page shows the new
review to confirm again. A confirmation's `request_id` is remembered with its outcome, so a
second submit of the same confirmation (a double click, a reload) shows the first outcome and
applies nothing; applies are serialised in the gateway process.

Each step of an apply is an admin RPC with its own audit entry; the apply as a whole is one
more, the console's `ApplyProgramme` (the reason, the review's digest, the changes counted per
kind, what was applied), or `ApplyProgrammeRefused` when nothing was (stale, or refused).
A second submit of the same confirmation writes none.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from loyalty_admin.document import Problem
from loyalty_admin.live import CHANNELS, Services, calling, explain
from loyalty_admin.programme import Outcome, PlanRefused, export_text
from loyalty_admin.review import Review, Stale, apply, review_live
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from loyalty_gateway.console import journal
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

ACTION = "programme"
NAV = NavItem("programme", "/programme", ACTION)
MAX_TEXT = 512 * 1024  # characters of a submitted file
MAX_REASON = 500
KEPT = 256  # outcomes remembered by request_id
TARGET = "programme"  # what an apply's audit entry names as its target
KINDS = ("added", "changed", "removed")


def normalised(text: str) -> str:
    """A submitted file as reviewed: browsers send a form's line breaks as CRLF, and the
    review's digest covers the text, so the review and the apply must see the same lines."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class Line:
    number: int
    text: str
    problems: tuple[Problem, ...] = ()
    changed: bool = False


def numbered(
    text: str, problems: tuple[Problem, ...] = (), changed: set[int] | None = None
) -> list[Line]:
    """The file's lines, numbered from 1, each with the problems found at it."""
    at: dict[int, list[Problem]] = {}
    for problem in problems:
        at.setdefault(problem.line, []).append(problem)
    marked = changed or set()
    return [
        Line(number, line, tuple(at.get(number, ())), number in marked)
        for number, line in enumerate(text.split("\n"), start=1)
    ]


def changed_lines(found: Review) -> set[int]:
    return {change.line for section in found.sections for change in section.changes if change.line}


def valid_request_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass
class Applies:
    """What the confirmations did, by (operator, request_id), in this gateway process."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: OrderedDict[tuple[str, str], Outcome] = field(default_factory=OrderedDict)

    def get(self, operator_id: str, request_id: str) -> Outcome | None:
        return self.done.get((operator_id, request_id))

    def keep(self, operator_id: str, request_id: str, outcome: Outcome) -> None:
        self.done[(operator_id, request_id)] = outcome
        while len(self.done) > KEPT:
            self.done.popitem(last=False)


def _applies(request: Request) -> Applies:
    state = request.app.state
    found: Applies | None = getattr(state, "programme_applies", None)
    if found is None:
        found = Applies()
        state.programme_applies = found
    return found


def _services(request: Request, operator: Operator) -> Services:
    console = console_of(request)
    metadata = as_operator(console.credentials, operator)
    channels = {name: channel_of(console.backends, name) for name in CHANNELS}
    return calling(channels, [(k, v) for k, v in metadata if isinstance(v, str)])


async def _live_text(services: Services) -> tuple[str, str]:
    """The live programme as a file, or "" and why it could not be read."""
    try:
        live = await services.read(journeys=True)
    except grpc.aio.AioRpcError as error:
        return "", explain(error)
    return export_text(live, datetime.now(UTC)), ""


def _page(
    request: Request,
    *,
    live: str,
    live_error: str = "",
    text: str = "",
    found: Review | None = None,
    message: str = "",
    message_detail: str = "",
    outcome: Outcome | None = None,
    reason: str = "",
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "live_lines": numbered(live) if live else [],
        "live_error": live_error,
        "text": text,
        "found": found,
        "lines": numbered(text, found.problems, changed_lines(found)) if found else [],
        "request_id": str(uuid.uuid4()),
        "message": message,
        "message_detail": message_detail,
        "outcome": outcome,
        "reason": reason,
    }
    return render(request, "programme/page.html", context, status)


@requires(ACTION)
async def show(request: Request) -> Response:
    operator = operator_of(request)
    services = _services(request, operator)
    live, error = await _live_text(services)
    outcome = None
    applied = request.query_params.get("applied", "")
    if applied:
        outcome = _applies(request).get(operator.operator_id, applied)
    return _page(request, live=live, live_error=error, outcome=outcome, text=live)


async def _review(services: Services, text: str) -> tuple[Review | None, str]:
    try:
        return await review_live(text, services), ""
    except grpc.aio.AioRpcError as error:
        return None, explain(error)


@requires(ACTION)
async def review_file(request: Request) -> Response:
    operator = operator_of(request)
    fields = form(await request.body())
    text = normalised(fields.get("text", ""))
    services = _services(request, operator)
    live, live_error = await _live_text(services)
    if not text.strip() or len(text) > MAX_TEXT:
        key = "programme.empty" if not text.strip() else "programme.too_long"
        return _page(request, live=live, live_error=live_error, text=text, message=key, status=400)
    found, error = await _review(services, text)
    if found is None:
        return _page(
            request,
            live=live,
            text=text,
            message="programme.unavailable",
            message_detail=error,
            status=503,
        )
    return _page(request, live=live, live_error=live_error, text=text, found=found)


async def _shown_again(
    request: Request,
    services: Services,
    text: str,
    message: str,
    status: int,
    *,
    found: Review | None = None,
    detail: str = "",
    reason: str = "",
) -> Response:
    """The page again after a confirmation that applied nothing, the live file read anew."""
    live, _ = await _live_text(services)
    return _page(
        request,
        live=live,
        text=text,
        found=found,
        message=message,
        message_detail=detail,
        reason=reason,
        status=status,
    )


def change_counts(found: Review) -> dict[str, Any]:
    """The review's changes counted per kind, in all and per changed section."""
    sections: dict[str, dict[str, int]] = {
        s.section: {str(k): n for k, n in s.counts().items()} for s in found.sections if s.changed
    }
    totals = {kind: sum(counts[kind] for counts in sections.values()) for kind in KINDS}
    return {"changes": totals, "sections": sections}


async def _record(
    request: Request,
    operator: Operator,
    found: Review,
    digest: str,
    request_id: str,
    reason: str,
    *,
    outcome: Outcome | None = None,
    refused: str = "",
) -> None:
    """The apply's own entry (each step's admin RPC has its own): applied (`ApplyProgramme`,
    OK, or ABORTED at a failed step) or refused with nothing applied (`ApplyProgrammeRefused`:
    stale, or a plan that cannot be applied). `digest` is the one the confirmation carried;
    the changes counted are the review's as it stands at the apply."""
    asked: dict[str, Any] = {"digest": digest, "request_id": request_id}
    asked.update(change_counts(found))
    if outcome is None:
        code = "ABORTED" if refused == "stale" else "FAILED_PRECONDITION"
        await journal.write(
            console_of(request),
            journal.APPLY_PROGRAMME_REFUSED,
            operator=operator,
            outcome=code,
            target=TARGET,
            reason=reason,
            request={**asked, "refused": refused},
        )
        return
    done: dict[str, Any] = {"applied": sorted(outcome.done), "unchanged": list(outcome.unchanged)}
    if not outcome.ok:
        done.update(failed=outcome.failed, left=list(outcome.left))
    await journal.write(
        console_of(request),
        journal.APPLY_PROGRAMME,
        operator=operator,
        outcome="OK" if outcome.ok else "ABORTED",
        target=TARGET,
        reason=reason,
        request=asked,
        after=done,
    )


@requires(ACTION)
async def apply_file(request: Request) -> Response:
    operator = operator_of(request)
    fields = form(await request.body())
    text = normalised(fields.get("text", ""))
    digest = fields.get("digest", "")
    request_id = fields.get("request_id", "")
    reason = fields.get("reason", "").strip()[:MAX_REASON]
    services = _services(request, operator)
    base = request.scope.get("root_path", "")
    applied = RedirectResponse(f"{base}/programme?applied={request_id}", status_code=303)
    applies = _applies(request)
    if not valid_request_id(request_id) or not digest or not text.strip():
        return await _shown_again(request, services, text, "programme.bad_confirmation", 400)
    if applies.get(operator.operator_id, request_id) is not None:
        return applied  # the first submit's outcome (and its entry) stands
    async with applies.lock:
        if applies.get(operator.operator_id, request_id) is not None:
            return applied
        found, error = await _review(services, text)
        if found is None:
            return await _shown_again(
                request, services, text, "programme.unavailable", 503, detail=error
            )
        if not reason:
            return await _shown_again(
                request, services, text, "programme.reason_required", 400, found=found
            )
        try:
            outcome = await apply(found, digest, services, reason=reason)
        except (Stale, PlanRefused) as refused:
            stale = isinstance(refused, Stale)
            await _record(
                request,
                operator,
                found,
                digest,
                request_id,
                reason,
                refused="stale" if stale else "plan",
            )
            return await _shown_again(
                request,
                services,
                text,
                "programme.stale" if stale else "programme.refused",
                409,
                found=found,
                detail="" if stale else str(refused),
                reason=reason if stale else "",
            )
        applies.keep(operator.operator_id, request_id, outcome)
        await _record(request, operator, found, digest, request_id, reason, outcome=outcome)
    return applied


ROUTES: list[BaseRoute] = [
    Route("/programme", show, methods=["GET"]),
    Route("/programme/review", review_file, methods=["POST"]),
    Route("/programme/apply", apply_file, methods=["POST"]),
]
