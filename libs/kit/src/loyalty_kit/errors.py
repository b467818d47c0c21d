"""Domain errors: pure Python, raised by domain and service layers, mapped to google.rpc.Status
by one server interceptor (see `status.py`). No servicer catches them itself.

Each error has a stable `reason` (UPPER_SNAKE, AIP-193), a human message and metadata. Invalid
input carries field violations, which become a google.rpc.BadRequest detail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum


class ErrorKind(Enum):
    """The gRPC status family of an error, without importing grpc into the domain."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field, named by its path in the request (`profile.birthday`, `lines[2].amount`)."""

    field: str
    description: str
    reason: str = ""


class DomainError(Exception):
    kind: ErrorKind = ErrorKind.FAILED_PRECONDITION
    reason: str = "FAILED_PRECONDITION"
    # When to try again (seconds), answered as a google.rpc.RetryInfo (a rate limit's refusal).
    retry_after_seconds: float | None = None

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)


class InvalidArgument(DomainError):
    kind = ErrorKind.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    @classmethod
    def of(cls, violations: Sequence[FieldViolation], message: str = "") -> InvalidArgument:
        text = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(text, field_violations=violations)


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    kind = ErrorKind.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    kind = ErrorKind.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class PermissionDenied(DomainError):
    kind = ErrorKind.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    kind = ErrorKind.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class ResourceExhausted(DomainError):
    kind = ErrorKind.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Aborted(DomainError):
    kind = ErrorKind.ABORTED
    reason = "ABORTED"


class Unavailable(DomainError):
    """Cannot be done now, may be later: callers retry (gRPC UNAVAILABLE, HTTP 503)."""

    kind = ErrorKind.UNAVAILABLE
    reason = "UNAVAILABLE"


class MemberNotActive(FailedPrecondition):
    """A suspended, merged or erased member, refused alike by every service that moves
    something for members (points, benefits): reason MEMBER_SUSPENDED, MEMBER_MERGED or
    MEMBER_ERASED; a merged member's error names the member it was merged into."""

    def __init__(self, member_id: str, state: str, merged_into: str = "") -> None:
        metadata = {"member_id": member_id, "state": state}
        if merged_into:
            metadata["merged_into"] = merged_into
        super().__init__(
            f"member {member_id} is {state}"
            + (f" (merged into {merged_into})" if merged_into else ""),
            reason=f"MEMBER_{state.upper()}",
            metadata=metadata,
        )


class Violations:
    """Collects field violations while validating a request, then raises them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str, reason: str = "") -> None:
        self.items.append(FieldViolation(field, description, reason))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, message: str = "") -> None:
        if self.items:
            raise InvalidArgument.of(self.items, message)
