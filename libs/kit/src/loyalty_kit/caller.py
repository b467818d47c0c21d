"""Who is calling: the business unit, the API client and its scopes.

Callers send them as gRPC metadata (`x-loyalty-unit`, `x-loyalty-client`, `x-loyalty-scopes`,
space-separated); the server interceptor puts them in a context variable for the call, and
service code asks `current_caller()`. A call without them is anonymous and has no scopes: it
sees masked personal data.

Trust boundary: a bearer token (`loyalty_kit.auth`) always wins over these headers; the headers
alone count only where `LOYALTY_AUTH_TRUST_HEADERS` is true (development). Elsewhere a call
without a token is refused, and services calling each other present tokens of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

from loyalty_kit.errors import PermissionDenied, Unauthenticated
from loyalty_kit.scopes import ADMIN, PERSONAL_DATA_READ

UNIT_HEADER = "x-loyalty-unit"
CLIENT_HEADER = "x-loyalty-client"
SCOPES_HEADER = "x-loyalty-scopes"
# The operator (a person at a console) a client acts for: recorded in the audit log. Signed as
# the token's `op` claim; this header counts only where the caller headers are trusted.
OPERATOR_HEADER = "x-loyalty-operator"


@dataclass(frozen=True)
class Caller:
    unit: str = ""
    client_id: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)
    operator: str = ""
    # The member a member's own token speaks for (its `member` claim; never from a header):
    # such a caller holds only the member scopes and reaches only that member's data.
    member: str = ""
    # The sign-in session a member's own token belongs to (its `sid` claim): the service that
    # keeps sessions refuses a token whose session was ended.
    session: str = ""

    def may(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes

    def sees_personal_data_of(self, member_id: str) -> bool:
        """Whether this caller reads `member_id`'s personal data unmasked: with
        `personal_data:read`, or as that member's own token (masking is for others)."""
        return self.may(PERSONAL_DATA_READ) or (bool(self.member) and self.member == member_id)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata that carries this caller onward (or from a client)."""
        items = [(UNIT_HEADER, self.unit), (CLIENT_HEADER, self.client_id)]
        items.append((SCOPES_HEADER, " ".join(sorted(self.scopes))))
        items.append((OPERATOR_HEADER, self.operator))
        return tuple((k, v) for k, v in items if v)


ANONYMOUS = Caller()
_current: ContextVar[Caller] = ContextVar("caller", default=ANONYMOUS)


__all__ = ["ADMIN", "PERSONAL_DATA_READ"]  # re-exported: the scopes live in `scopes`

CALLER_HEADERS = (UNIT_HEADER, CLIENT_HEADER, SCOPES_HEADER, OPERATOR_HEADER)


def header_text(key: str, value: str | bytes) -> str:
    """A metadata value we read, as text; UNAUTHENTICATED when it is bytes that are not UTF-8
    (only `-bin` keys carry bytes; those we do not read are never decoded)."""
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise Unauthenticated(
            f"the {key} header is not UTF-8 text",
            reason="METADATA_INVALID",
            metadata={"header": key},
        ) from None


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    values: dict[str, str] = {}
    for key, value in metadata or ():
        name = key.lower()
        if name in CALLER_HEADERS:
            values[name] = header_text(name, value)
    return Caller(
        unit=values.get(UNIT_HEADER, ""),
        client_id=values.get(CLIENT_HEADER, ""),
        scopes=frozenset(values.get(SCOPES_HEADER, "").split()),
        operator=values.get(OPERATOR_HEADER, ""),
    )


def set_current_caller(caller: Caller) -> None:
    _current.set(caller)


def current_caller() -> Caller:
    return _current.get()


def confining_unit() -> str | None:
    """The unit the current caller is confined to, for resources whose unit is known only once
    loaded (a redemption, a consumption); None for an admin, who may touch any."""
    caller = current_caller()
    return None if caller.may(ADMIN) else caller.unit


def check_unit(unit: str, confined_to: str | None) -> None:
    """Refuse (UNIT_MISMATCH) a resource of `unit` to a caller confined to another unit."""
    if confined_to is not None and confined_to != unit:
        raise UnitMismatch(unit, confined_to)


class UnitMismatch(PermissionDenied):
    """A unit acting for another: 403 with reason UNIT_MISMATCH."""

    reason = "UNIT_MISMATCH"

    def __init__(self, unit: str, caller_unit: str) -> None:
        super().__init__(
            f"a {caller_unit or 'caller without a unit'} client cannot act for {unit}",
            metadata={"unit": unit, "caller_unit": caller_unit},
        )
