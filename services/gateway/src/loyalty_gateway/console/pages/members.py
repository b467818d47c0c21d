"""The console's member pages: search (`/members?q=`), a member's 360 (`/members/{id}`), its
statement's further pages (an htmx fragment), showing personal data in clear (a POST, recorded),
and the operator's actions, each a form with a required reason, then a confirmation page, then
the action (flows/member360.py's `MemberActions`, called with the operator's credentials).

Every value reaches the page through Jinja2's autoescape: a name such as `<script>` is text.
A unit manager asking for another unit's member gets a 403 page naming the reason, no data.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.identity.v1 import member_pb2
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit.errors import DomainError, InvalidArgument, NotFound, PermissionDenied
from loyalty_kit.resources import MEMBERS
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from loyalty_gateway.console import journal
from loyalty_gateway.console.auth import form
from loyalty_gateway.console.backend import as_operator, operator_caller
from loyalty_gateway.console.operators import Operator
from loyalty_gateway.console.render import (
    NavItem,
    console_of,
    refused_for_role,
    render,
    requires,
    session_of,
)
from loyalty_gateway.console.roles import may
from loyalty_gateway.flows.member360 import (
    OUT_OF_REACH,
    MemberActions,
    View360,
    new_request_id,
)

NAV = NavItem("members", "/members", "members")

# The parts of a 360 in the order shown (flows/member360.py names them).
PARTS = (
    "balance",
    "lots",
    "tier",
    "tier_history",
    "tier_grants",
    "entitlements",
    "coupons",
    "messages",
    "segments",
    "challenges",
    "badges",
    "consent_history",
)
# Each action: the role's action that may do it, and its extra fields.
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "adjust": ("adjust", ("points", "unit")),
    "suspend": ("suspend", ()),
    "reactivate": ("suspend", ()),
    "coupon": ("coupons", ("template",)),
    "grant": ("tiers", ("tier", "end_date")),
    "revoke": ("tiers", ("grant",)),
    "merge": ("merge", ("absorbed",)),
    "unmerge": ("merge", ("restored", "identities")),
    "erase": ("erase", ("typed",)),
}
MAX_COLUMNS = 7


# The parts of a member a "show" puts in clear (recorded by name, never their values).
UNMASKED_PARTS = ("profile", "identities")


async def record_unmask(request: Request, operator: Operator, member: str) -> None:
    """An operator saw a member's personal data in clear: an entry of the audit log (who, when,
    which member, which parts; no values)."""
    await journal.record_unmask(console_of(request), operator, member, UNMASKED_PARTS)


# What a part's answer looks like on the page.


@dataclass(frozen=True)
class Shown:
    pairs: list[tuple[str, str]]  # scalar fields of the answer
    columns: list[str]  # a table of its first list of messages (if any)
    rows: list[list[str]]
    listed: bool  # the answer has such a list (so an empty table means "none")


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def shown(answer: Any) -> Shown:
    """A generic view of a part's answer: its scalars, and its first repeated message field as a
    table (its items' fields as columns)."""
    if not isinstance(answer, Message):
        given = list(answer) if isinstance(answer, list | tuple) else []
        return _table([MessageToDict(i) for i in given if isinstance(i, Message)], [], True)
    listed_field = next(
        (
            f
            for f in answer.DESCRIPTOR.fields
            if (
                getattr(f, "is_repeated", False)
                or getattr(f, "label", 0) == FieldDescriptor.LABEL_REPEATED
            )
            and f.message_type is not None
            and not f.message_type.GetOptions().map_entry
        ),
        None,
    )
    data = MessageToDict(answer)
    pairs: list[tuple[str, str]] = []
    items: list[dict[str, Any]] = []
    for key, value in data.items():
        if listed_field is not None and key == listed_field.json_name:
            items = list(value)
        elif isinstance(value, dict) and len(data) == 1:
            pairs += [(k, _text(v)) for k, v in value.items()]
        else:
            pairs.append((key, _text(value)))
    return _table(items, pairs, listed_field is not None)


def _table(items: list[dict[str, Any]], pairs: list[tuple[str, str]], listed: bool) -> Shown:
    columns: list[str] = []
    for item in items:
        for key in item:
            if key not in columns and len(columns) < MAX_COLUMNS:
                columns.append(key)
    rows = [[_text(item.get(c, "")) for c in columns] for item in items]
    return Shown(pairs, columns, rows, listed)


def _when(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M")


# Calling the flows as the signed-in operator.


def _actions(request: Request) -> MemberActions:
    actions: MemberActions = console_of(request).members
    return actions


def _as_operator(request: Request, *, personal_data: bool = False) -> tuple[Any, Any, Operator]:
    console = console_of(request)
    session = session_of(request)
    assert session is not None  # every page here is behind `requires`
    operator = session.operator
    md = as_operator(console.credentials, operator, personal_data=personal_data)
    return md, operator_caller(operator, personal_data=personal_data), operator


def _member_of(request: Request) -> str:
    return f"{MEMBERS}{request.path_params['member_id']}"


async def _refused(request: Request, error: Exception, asked: str) -> Response | None:
    """The page for an error that is the whole answer's (refused, unknown), else None. A
    member out of the operator's reach is an entry of the audit log: who, what was `asked`,
    and the member's id."""
    reason, status = "", 0
    if isinstance(error, PermissionDenied):
        reason, status = error.reason or "PERMISSION_DENIED", 403
    elif isinstance(error, NotFound | InvalidArgument):
        status = 404
    elif isinstance(error, grpc.aio.AioRpcError):
        if error.code() == grpc.StatusCode.PERMISSION_DENIED:
            reason, status = "PERMISSION_DENIED", 403
        elif error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            status = 404
    if not status:
        return None
    if reason == OUT_OF_REACH:
        session = session_of(request)
        assert session is not None  # every page here is behind `requires`
        named = request.path_params.get("member_id", "")
        if not named and isinstance(error, DomainError):
            named = error.metadata.get("member", "")
        await journal.record_refusal(
            console_of(request),
            request,
            session.operator,
            journal.REFUSED_OUT_OF_REACH,
            asked,
            member=str(named),
        )
    key = "members.out_of_reach" if reason == OUT_OF_REACH else f"members.refused_{status}"
    return render(
        request, "members/refused.html", {"status": status, "reason": reason, "why": key}, status
    )


def _problem(error: Exception) -> tuple[list[tuple[str, str]], str]:
    """Field violations and a message for an action that failed."""
    if isinstance(error, InvalidArgument):
        return [(v.field, v.description) for v in error.field_violations], ""
    if isinstance(error, DomainError):
        return [], str(error)
    if isinstance(error, grpc.aio.AioRpcError):
        return [], f"{error.code().name}: {error.details()}"
    raise error


# Search.


@requires("members")
async def search(request: Request) -> Response:
    query = request.query_params.get("q", "")[:200]
    hits: list[Any] = []
    errors: list[tuple[str, str]] = []
    searched = bool(query.strip())
    if searched:
        md, _, _ = _as_operator(request)
        try:
            hits = await _actions(request).reads.find_members(md, query)
        except InvalidArgument as error:
            errors = [(v.field, v.description) for v in error.field_violations]
        except (DomainError, grpc.aio.AioRpcError) as error:
            refused = await _refused(request, error, "search")
            if refused is not None:
                return refused
            errors = _problem(error)[0] or [("query", _problem(error)[1])]
    return render(
        request,
        "members/search.html",
        {"q": query, "hits": hits, "errors": errors, "searched": searched},
        400 if errors else 200,
    )


# A member's 360.


async def _page(
    request: Request,
    *,
    personal_data: bool = False,
    done: str = "",
) -> Response:
    member = _member_of(request)
    md, caller, operator = _as_operator(request, personal_data=personal_data)
    try:
        view: View360 = await _actions(request).reads.member_360(md, caller, member)
    except (DomainError, grpc.aio.AioRpcError) as error:
        refused = await _refused(request, error, "unmask" if personal_data else "member")
        if refused is None:
            raise
        return refused
    if personal_data:
        await record_unmask(request, operator, member)
    return render(request, "members/member.html", _context(request, view, operator, done))


def _context(request: Request, view: View360, operator: Operator, done: str) -> dict[str, Any]:
    statement = view.parts.get("statement")
    return {
        "m": view.member,
        "member_id": view.member.member_id,
        "state": member_pb2.MemberState.Name(view.member.state),
        "since": _when(view.member.create_time),
        "identities": view.parts.get("identities", []),
        "consents": [
            (member_pb2.ConsentPurpose.Name(c.purpose), c.granted, c.source, _when(c.update_time))
            for c in view.parts.get("consents", [])
        ],
        "parts": [(name, shown(view.parts[name])) for name in PARTS if name in view.parts],
        "unavailable": view.unavailable,
        "statement": _statement_rows(statement) if statement is not None else None,
        "next_token": statement.next_page_token if statement is not None else "",
        "may": {a: may(operator.role, needed) for a, (needed, _) in ACTIONS.items()},
        "may_unmask": may(operator.role, "unmask"),
        "unit_fixed": operator.unit if operator.unit != "group" else "",
        "request_id": new_request_id(),
        "done": done if done in ACTIONS else "",
    }


def _statement_rows(page: Any) -> list[tuple[str, str, int, str, str]]:
    from loyalty.points.v1 import points_service_pb2 as points_pb

    return [
        (
            _when(p.post_time),
            points_pb.PostingKind.Name(p.kind).removeprefix("POSTING_KIND_").lower(),
            p.points,
            p.unit,
            p.reason,
        )
        for p in page.postings
    ]


@requires("members")
async def member_page(request: Request) -> Response:
    return await _page(request, done=request.query_params.get("done", ""))


@requires("unmask")
async def unmask(request: Request) -> Response:
    return await _page(request, personal_data=True)


@requires("members")
async def statement(request: Request) -> Response:
    member = _member_of(request)
    md, caller, _ = _as_operator(request)
    token = request.query_params.get("page_token", "")[:500]
    try:
        page = await _actions(request).reads.statement(md, caller, member, token)
    except (DomainError, grpc.aio.AioRpcError) as error:
        refused = await _refused(request, error, "statement")
        if refused is None:
            raise
        return refused
    return render(
        request,
        "members/statement.html",
        {
            "member_id": request.path_params["member_id"],
            "statement": _statement_rows(page),
            "next_token": page.next_page_token,
        },
    )


# Actions: a form, a confirmation page, the action.


@requires("members")
async def act(request: Request) -> Response:
    action = request.path_params["action"]
    if action not in ACTIONS:
        return render(request, "error.html", {"status": 404}, 404)
    needed, extra = ACTIONS[action]
    session = session_of(request)
    assert session is not None
    if not may(session.operator.role, needed):
        return await refused_for_role(request, needed)
    fields = form(await request.body())
    member_id = request.path_params["member_id"]
    values = {k: fields.get(k, "")[:1000] for k in ("reason", "request_id", *extra)}
    if session.operator.unit != "group" and "unit" in values:
        values["unit"] = session.operator.unit
    errors: list[tuple[str, str]] = []
    message = ""
    if not values["reason"].strip():
        errors.append(("reason", ""))
    if action == "erase" and fields.get("confirmed") and values["typed"] != member_id:
        errors.append(("typed", ""))
    if fields.get("confirmed") == "yes" and not errors:
        try:
            await _perform(request, action, _member_of(request), values)
        except (DomainError, grpc.aio.AioRpcError) as error:
            # Out of the operator's reach: the refusal page, nothing of the member shown. A
            # service refusing the action itself is said on this page.
            if isinstance(error, PermissionDenied):
                refused = await _refused(request, error, action)
                if refused is not None:
                    return refused
            errors, message = _problem(error)
        else:
            base = request.scope.get("root_path", "")
            return RedirectResponse(
                f"{base}/members/{member_id}?done={action}#actions", status_code=303
            )
    return render(
        request,
        "members/confirm.html",
        {
            "action": action,
            "member_id": member_id,
            "values": values,
            "errors": errors,
            "message": message,
        },
        400 if errors or message else 200,
    )


def _int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        return 0


def _end_of(day: str) -> Timestamp:
    stamp = Timestamp()
    with contextlib.suppress(ValueError):
        stamp.FromDatetime(datetime.strptime(day.strip(), "%Y-%m-%d").replace(tzinfo=UTC))
    return stamp


async def _perform(request: Request, action: str, member: str, values: dict[str, str]) -> Any:
    actions = _actions(request)
    md, caller, _ = _as_operator(request)
    common = {"request_id": values["request_id"], "reason": values["reason"]}
    if action == "adjust":
        return await actions.adjust_points(
            md, caller, member, unit=values["unit"], points=_int(values["points"]), **common
        )
    if action == "suspend":
        return await actions.suspend(md, caller, member, **common)
    if action == "reactivate":
        return await actions.reactivate(md, caller, member, **common)
    if action == "coupon":
        return await actions.issue_coupon(md, caller, member, template=values["template"], **common)
    if action == "grant":
        return await actions.grant_tier(
            md,
            caller,
            member,
            tier=values["tier"],
            kind=tiers_pb.GRANT_KIND_GIFT,
            end_time=_end_of(values["end_date"]),
            **common,
        )
    if action == "revoke":
        return await actions.revoke_tier(md, caller, values["grant"].strip(), **common)
    if action == "merge":
        absorbed = values["absorbed"].strip()
        absorbed = absorbed if absorbed.startswith(MEMBERS) else f"{MEMBERS}{absorbed}"
        return await actions.merge(md, caller, member, absorbed, **common)
    if action == "unmerge":
        restored = values["restored"].strip()
        restored = restored if restored.startswith(MEMBERS) else f"{MEMBERS}{restored}"
        identities = [
            member_pb2.Identity(type=kind.strip(), value=value.strip())
            for kind, _, value in (
                line.partition(":") for line in values["identities"].splitlines() if ":" in line
            )
        ]
        return await actions.unmerge(md, caller, member, restored, identities, **common)
    return await actions.erase(md, caller, member, **common)


ROUTES: list[BaseRoute] = [
    Route("/members", search, methods=["GET"]),
    Route("/members/{member_id}", member_page, methods=["GET"]),
    Route("/members/{member_id}/statement", statement, methods=["GET"]),
    Route("/members/{member_id}/unmask", unmask, methods=["POST"]),
    Route("/members/{member_id}/act/{action}", act, methods=["POST"]),
]
