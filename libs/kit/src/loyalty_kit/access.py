"""Who may call what: each service declares one rule per RPC method (its `entrypoints/access.py`,
handed to the kit in `ServiceSpec.access`), and the kit's interceptor checks it before the
servicer runs. A method without a rule is refused (fail closed).

A rule names the scopes that grant the call (any one of them; none: any authenticated caller;
`admin` always passes) and, where the request names the unit the call acts for, that field (a
path such as `spec.unit` for a field of a message field): a unit's client acts only for its own
unit, an admin for any (a client stream's unit on its first message). A resource whose unit is
known only once loaded (a redemption, a consumption) is checked by its handler
(`confining_unit`); the rule names it for the documentation. A rule may name the request's
member field, where a member's own token may call for that member; or be `member_only`: a method
about the member the token speaks for, whose request names no member, which only a member's own
token may call. `render_markdown` writes the tables of docs/access.md.

A member token refused (another member's data, a method members may not call) is counted in the
service's metrics: `loyalty_member_token_refusals_total{reason, service}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loyalty_kit import metrics
from loyalty_kit.caller import ADMIN, Caller, UnitMismatch, current_caller
from loyalty_kit.errors import PermissionDenied
from loyalty_kit.kernel.members import member_name


@dataclass(frozen=True)
class Rule:
    scopes: frozenset[str] = field(default_factory=frozenset)
    unit_field: str = ""
    resource_unit: str = ""
    note: str = ""
    # Every call (refusals too) is written to the audit log (`loyalty_kit.audit`).
    audited: bool = False
    # The request field naming the member the call is about (its id, or its resource name
    # `members/{id}`), where a member's own token may make it (with one of the rule's scopes,
    # or any token where the rule names none): only for the member the token speaks for. A
    # rule without one refuses every member token.
    member_field: str = ""
    # Only a member's own token may call (with one of the rule's scopes): the method acts for
    # the member the token speaks for, and its request names none. Any other caller, admins
    # too, is refused (403 MEMBER_TOKEN_REQUIRED).
    member_only: bool = False


def rule(
    *scopes: str,
    unit_field: str = "",
    resource_unit: str = "",
    note: str = "",
    audited: bool = False,
    member_field: str = "",
    member_only: bool = False,
) -> Rule:
    """`rule("earn", "members:register", unit_field="unit")`: shorter to declare."""
    return Rule(
        frozenset(scopes), unit_field, resource_unit, note, audited, member_field, member_only
    )


ANY_CALLER = rule()
ADMIN_ONLY = rule(ADMIN)
ADMIN_AUDITED = rule(ADMIN, audited=True)


class NoAccessRule(PermissionDenied):
    reason = "NO_ACCESS_RULE"


class MemberTokenRefused(PermissionDenied):
    """A member's own token on a method members may not call: 403 MEMBER_TOKEN_REFUSED."""

    reason = "MEMBER_TOKEN_REFUSED"


class MemberTokenRequired(PermissionDenied):
    """A method for a member's own token only, called with any other: 403
    MEMBER_TOKEN_REQUIRED (no field: the request names no member)."""

    reason = "MEMBER_TOKEN_REQUIRED"


class MemberMismatch(PermissionDenied):
    """A member's own token naming another member (or none): 403 MEMBER_MISMATCH. The other
    member's id is not echoed back."""

    reason = "MEMBER_MISMATCH"


def scope_required(scopes: frozenset[str]) -> PermissionDenied:
    named = " or ".join(sorted(scopes))
    return PermissionDenied(
        f"this needs the {named} scope", reason="SCOPE_REQUIRED", metadata={"scope": named}
    )


def check(access: Mapping[str, Rule], method: str, request: Any, caller: Caller) -> None:
    """Refuse (PERMISSION_DENIED) a call the rule of `method` does not allow `caller`.

    `request` may be None (not decoded): then only the scopes are checked."""
    found = access.get(method)
    if found is None:
        raise NoAccessRule(f"{method} has no access rule: refused", metadata={"method": method})
    if found.member_only:
        if not caller.member:
            raise MemberTokenRequired(
                f"{method} is a member's own: call it with the member's token (a sign-in's)",
                metadata={"method": method},
            )
    elif caller.member:
        try:
            _check_member(found, method, request, caller)
        except (MemberTokenRefused, MemberMismatch) as refused:
            _count_member_token_refusal(refused.reason)
            raise
    if found.scopes and not any(caller.may(scope) for scope in found.scopes):
        raise scope_required(found.scopes)
    if found.unit_field and request is not None and not caller.may(ADMIN) and not caller.member:
        unit = field_of(request, found.unit_field)
        if isinstance(unit, str) and unit.strip() and unit.strip() != caller.unit:
            raise UnitMismatch(unit.strip(), caller.unit)


MEMBER_TOKEN_REFUSALS = "loyalty_member_token_refusals"
MEMBER_TOKEN_REFUSALS_HELP = (
    "Members' own tokens refused by the access rules, by reason (MEMBER_MISMATCH: another "
    "member's data; MEMBER_TOKEN_REFUSED: a method members may not call) and service."
)


def _count_member_token_refusal(reason: str) -> None:
    found = metrics.current()
    service = found.service if found is not None else ""
    metrics.add(
        MEMBER_TOKEN_REFUSALS, MEMBER_TOKEN_REFUSALS_HELP, {"reason": reason, "service": service}
    )


def _check_member(found: Rule, method: str, request: Any, caller: Caller) -> None:
    """A member's own token: only where the rule names the member field, and only for them
    (a rule without scopes is then open to any caller, the member's own token too)."""
    if not found.member_field:
        raise MemberTokenRefused(
            f"a member's own token cannot call {method}", metadata={"method": method}
        )
    if request is None:
        return  # not decoded: the scopes are checked now, the member once it is
    named = field_of(request, found.member_field)
    # The member's ID, or its resource name (`members/{id}`) where the contract names members so.
    own = (caller.member, member_name(caller.member))
    if not isinstance(named, str) or named.strip() not in own:
        raise MemberMismatch(
            "a member's own token reaches only that member's data",
            metadata={"field": found.member_field},
        )


def field_of(request: Any, path: str) -> Any:
    """The value of a field of `request` named by its path (`unit`, or `spec.unit` in a
    message field); "" where the path does not lead to one."""
    value = request
    for name in path.split("."):
        value = getattr(value, name, "")
    return value


def authorise(access: Mapping[str, Rule], method: str, request: Any) -> None:
    """`check` for the current caller (the gateway's HTTP routes to its own methods)."""
    check(access, method, request, current_caller())


def method_name(path: str) -> str:
    """`/loyalty.points.v1.PointsService/EarnPoints` -> `EarnPoints`."""
    return path.rsplit("/", 1)[-1]


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "-"


def render_markdown(tables: Iterable[tuple[str, Iterable[str], Mapping[str, Rule]]]) -> str:
    """The access tables, one per service: (service, its RPC methods in contract order, rules)."""
    out = [
        "# Who may call what",
        "",
        "Generated from each service's `entrypoints/access.py` (the gateway's `access.py`) by",
        "`make access-docs`; a test fails when this file differs from the rules.",
        "",
        "- **Scopes**: any one of them grants the call; `any caller` means any authenticated",
        "  caller (a till reading a balance). The `admin` scope passes every rule.",
        "- **Acts for the unit in**: the request field naming the unit the call acts for; a",
        "  unit's client may name only its own unit (else 403 `UNIT_MISMATCH`), an admin any.",
        "- **Unit checked on**: a resource whose unit the service checks once it has loaded",
        "  it: only that unit's clients (and admins) may touch it.",
        "- Refusals: no or a bad token 401 (`TOKEN_MISSING`, `TOKEN_EXPIRED`, `TOKEN_INVALID`);",
        "  a missing scope 403 `SCOPE_REQUIRED`; a method without a rule 403 `NO_ACCESS_RULE`.",
        "- **Member in**: the request field naming the member, where a member's own token (the",
        "  `self:*` scopes) may call: only for the member it speaks for (else 403",
        "  `MEMBER_MISMATCH`); every other method refuses a member token (403",
        "  `MEMBER_TOKEN_REFUSED`). **the token's (only)**: the method acts for the member",
        "  the token speaks for (its request names none) and only a member's own token may",
        "  call it; any other, admins too, is refused (403 `MEMBER_TOKEN_REQUIRED`).",
        "- **Audited**: every call, refused ones too, is written to the audit log (who, when,",
        "  what, why, the outcome, before and after where known): `GET /v1/auditEntries`.",
        "  A retry answered from the idempotency store (the same `request_id`) adds no entry.",
        "",
    ]
    for service, methods, access in tables:
        out += [
            f"## {service}",
            "",
            "| RPC | Scopes | Acts for the unit in | Member in | Unit checked on | Audited "
            "| Note |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for method in methods:
            found = access.get(method)
            if found is None:
                out.append(f"| {method} | **no rule: refused** | - | - | - | - | - |")
                continue
            scopes = ", ".join(f"`{s}`" for s in sorted(found.scopes)) or "any caller"
            unit = f"`{found.unit_field}`" if found.unit_field else "-"
            member = f"`{found.member_field}`" if found.member_field else "-"
            if found.member_only:
                member = "the token's (only)"
            out.append(
                f"| {method} | {scopes} | {unit} | {member} | {_cell(found.resource_unit)} "
                f"| {'yes' if found.audited else '-'} | {_cell(found.note)} |"
            )
        out.append("")
    return "\n".join(out)
