"""Who is calling: the business unit, the API client and its scopes.

Callers send them as gRPC metadata (`x-loyalty-unit`, `x-loyalty-client`, `x-loyalty-scopes`,
space-separated); the server interceptor puts them in a context variable for the call, and
service code asks `current_caller()`. A call without them is anonymous and has no scopes: it
sees masked personal data.

Trust boundary: until the gateway issue adds credential checks (a shared interceptor verifying
signed tokens), these headers are taken as sent, so services must only be reachable from the
gateway and the units' backends on a private network.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

UNIT_HEADER = "x-loyalty-unit"
CLIENT_HEADER = "x-loyalty-client"
SCOPES_HEADER = "x-loyalty-scopes"

PERSONAL_DATA_READ = "personal_data:read"


@dataclass(frozen=True)
class Caller:
    unit: str = ""
    client_id: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)

    def may(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata that carries this caller onward (or from a client)."""
        items = [(UNIT_HEADER, self.unit), (CLIENT_HEADER, self.client_id)]
        items.append((SCOPES_HEADER, " ".join(sorted(self.scopes))))
        return tuple((k, v) for k, v in items if v)


ANONYMOUS = Caller()
_current: ContextVar[Caller] = ContextVar("caller", default=ANONYMOUS)


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    values: dict[str, str] = {}
    for key, value in metadata or ():
        values[key.lower()] = value.decode() if isinstance(value, bytes) else value
    return Caller(
        unit=values.get(UNIT_HEADER, ""),
        client_id=values.get(CLIENT_HEADER, ""),
        scopes=frozenset(values.get(SCOPES_HEADER, "").split()),
    )


def set_current_caller(caller: Caller) -> None:
    _current.set(caller)


def current_caller() -> Caller:
    return _current.get()


def require_scope(scope: str) -> Caller:
    """The current caller, if it holds `scope` (or admin); PERMISSION_DENIED otherwise."""
    from loyalty_kit.errors import PermissionDenied

    caller = current_caller()
    if not caller.may(scope):
        raise PermissionDenied(
            f"this needs the {scope} scope", reason="SCOPE_REQUIRED", metadata={"scope": scope}
        )
    return caller


def require_unit(unit: str) -> Caller:
    """The current caller, if it may act for `unit`: a unit acts only for itself (a mall client
    cannot sell the hotel's membership); an admin acts for any. PERMISSION_DENIED otherwise."""
    from loyalty_kit.errors import PermissionDenied

    caller = current_caller()
    if caller.unit != unit and not caller.may("admin"):
        raise PermissionDenied(
            f"a {caller.unit or 'caller without a unit'} client cannot act for {unit}",
            reason="UNIT_MISMATCH",
            metadata={"unit": unit, "caller_unit": caller.unit},
        )
    return caller
