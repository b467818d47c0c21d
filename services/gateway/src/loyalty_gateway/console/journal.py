"""The console's own entries in the gateway's audit log: sign-in, failed sign-in, lock-out,
sign-out, showing personal data, exporting the log, a refusal (a page the operator's role may
not use, a member out of the operator's reach) and a programme apply. Each is written through
the gateway's direct writer (`Console.audit_write`), as service `console`.

Personal data is never stored in clear: entries name operators and members by id only, and a
refusal records what was asked (the page or action, the HTTP method and path), never a search
text or a form's values.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded
from loyalty_kit.timestamps import timestamp

from loyalty_gateway.console.operators import Operator

if TYPE_CHECKING:
    from starlette.requests import Request

    from loyalty_gateway.console.render import Console

SERVICE = "console"

# The console's own methods, as they appear in the log.
SIGN_IN = "SignIn"
SIGN_IN_FAILED = "SignInFailed"
LOCK_OUT = "LockOut"
SIGN_OUT = "SignOut"
UNMASK = "ShowPersonalData"
EXPORT = "ExportAuditLog"
REFUSED_FOR_ROLE = "RefusedForRole"
REFUSED_OUT_OF_REACH = "RefusedOutOfReach"
APPLY_PROGRAMME = "ApplyProgramme"
APPLY_PROGRAMME_REFUSED = "ApplyProgrammeRefused"


async def write(
    console: Console,
    method: str,
    *,
    operator: Operator | None = None,
    operator_id: str = "",
    unit: str = "",
    outcome: str = "OK",
    target: str = "",
    request: dict[str, Any] | None = None,
    reason: str = "",
    after: Mapping[str, Any] | None = None,
) -> None:
    """One entry of the console's own into the audit log (nothing, in the fast tests' console,
    which has no database)."""
    writer = console.audit_write
    if writer is None:
        return
    entry = AuditEntryRecorded(
        entry_id=str(uuid.uuid4()),
        at=timestamp(console.clock()),
        service=SERVICE,
        method=method,
        outcome=outcome,
        unit=operator.unit if operator else unit,
        client_id=SERVICE,
        operator_id=operator.operator_id if operator else operator_id,
        reason=reason,
        request_id=f"console.{uuid.uuid4()}",
        target=target,
        request_json=json.dumps(request or {}, sort_keys=True),
        after_json=json.dumps(dict(after), sort_keys=True) if after is not None else "",
    )
    await writer(entry)


def _member_id(text: str) -> str:
    try:
        return str(uuid.UUID(text.removeprefix("members/")))
    except ValueError:
        return ""


async def record_sign_in(console: Console, outcome: Any) -> None:
    """A sign-in's entry: signed in, refused (a wrong or unknown login, a locked account) or a
    lock-out it caused. No login and no password is stored; a known operator is named by id."""
    operator = getattr(outcome, "operator", None)
    if operator is not None:
        await write(console, SIGN_IN, operator=operator)
        return
    operator_id = getattr(outcome, "operator_id", "")
    unit = getattr(outcome, "unit", "")
    if getattr(outcome, "locked_now", False):
        await write(
            console, LOCK_OUT, operator_id=operator_id, unit=unit, outcome="RESOURCE_EXHAUSTED"
        )
        return
    refused = "FAILED_PRECONDITION" if outcome.outcome == "locked" else "UNAUTHENTICATED"
    await write(
        console,
        SIGN_IN_FAILED,
        operator_id=operator_id,
        unit=unit,
        outcome=refused,
        request={"refused": outcome.outcome},
    )


async def record_sign_out(console: Console, operator: Operator | None) -> None:
    if operator is not None:
        await write(console, SIGN_OUT, operator=operator)


async def record_unmask(
    console: Console, operator: Operator, member: str, parts: tuple[str, ...]
) -> None:
    """An operator saw a member's personal data in clear: who, when, which member and which
    parts were shown (never the values)."""
    await write(
        console,
        UNMASK,
        operator=operator,
        target=member.removeprefix("members/"),
        request={"member_id": member.removeprefix("members/"), "shown": list(parts)},
    )


async def record_refusal(
    console: Console,
    request: Request,
    operator: Operator,
    method: str,
    asked: str,
    *,
    member: str = "",
) -> None:
    """The console refused an operator: `asked` is the page or action refused (a role's action,
    `member`, `search`...), with the HTTP method and the page's route (`/members/{member_id}`,
    never the path as typed, which could hold anything); `member` the member's id when the
    request named one (a member id only: other text is not recorded)."""
    member_id = _member_id(member)
    route = request.scope.get("route")
    asked_for: dict[str, Any] = {
        "asked": asked,
        "http_method": request.method,
        "route": getattr(route, "path", ""),
    }
    if member_id:
        asked_for["member_id"] = member_id
    await write(
        console,
        method,
        operator=operator,
        outcome="PERMISSION_DENIED",
        target=member_id,
        request=asked_for,
    )
