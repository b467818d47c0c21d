"""Domain errors -> google.rpc.Status (AIP-193), built with grpcio-status.

Every error carries an ErrorInfo (reason, domain, metadata); invalid input also carries a
BadRequest with one field violation per bad field. Unexpected exceptions become INTERNAL with a
reference id and nothing of the exception's text (which may hold internals or personal data).
"""

from __future__ import annotations

import secrets
import string

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from loyalty_kit.errors import DomainError, ErrorKind

_CODES: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: code_pb2.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    ErrorKind.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    ErrorKind.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
    ErrorKind.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    ErrorKind.ABORTED: code_pb2.ABORTED,
    ErrorKind.UNAVAILABLE: code_pb2.UNAVAILABLE,
}


def error_domain(service: str) -> str:
    """The ErrorInfo domain of a service, e.g. `points.loyalty`."""
    return f"{service}.loyalty"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


# A status travels in gRPC trailers, which peers cap (8 KiB by default): a request wrong in a
# hundred places gets the first violations, each cut short, and a count of the rest.
MAX_VIOLATIONS = 10
MAX_TEXT = 150


def _short(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_of(error: DomainError, service: str) -> status_pb2.Status:
    metadata = {k: _short(v) for k, v in error.metadata.items()}
    omitted = len(error.field_violations) - MAX_VIOLATIONS
    if omitted > 0:
        metadata["omitted_violations"] = str(omitted)
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=error_domain(service), metadata=metadata
    )
    details = [_pack(info)]
    if error.field_violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_short(v.field), description=_short(v.description), reason=v.reason
                )
                for v in error.field_violations[:MAX_VIOLATIONS]
            ]
        )
        details.append(_pack(bad_request))
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(max(0.0, error.retry_after_seconds) * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(
        code=_CODES[error.kind], message=_short(error.message, 300), details=details
    )


def error_reference() -> str:
    """An id tying an INTERNAL answer to its log line. Letters only: the logs mask runs of
    seven digits as phone numbers, and a hex id holding one could not be found again."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))


def internal_status(service: str, reference: str) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=error_domain(service), metadata={"reference": reference}
    )
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (reference {reference}); the service log has the details",
        details=[_pack(info)],
    )


def upstream_status(error: grpc.aio.AioRpcError, service: str) -> status_pb2.Status:
    """The status to answer with when a call to another service failed unhandled."""
    rich = from_rpc_error(error)
    if rich is not None:
        return rich
    code = error.code()
    info = error_details_pb2.ErrorInfo(
        reason=f"UPSTREAM_{code.name}",
        domain=error_domain(service),
        metadata={"upstream_code": code.name},
    )
    return status_pb2.Status(
        code=code.value[0], message=f"a dependency failed: {code.name}", details=[_pack(info)]
    )


def to_grpc_status(status: status_pb2.Status) -> grpc.Status:
    return rpc_status.to_status(status)


def from_rpc_error(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a peer sent, if any (clients use it to read ErrorInfo); None
    also when what came is not one that agrees with the call's code."""
    try:
        return rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        return None


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def bad_request(status: status_pb2.Status) -> error_details_pb2.BadRequest | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            found = error_details_pb2.BadRequest()
            detail.Unpack(found)
            return found
    return None


# Codes that mean the called service decided and wrote nothing: the caller may give back what
# it took and end. Any other code (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...) leaves the
# outcome unknown: the call may have taken effect, so only a retry with the same request_id
# (or a look-up) can tell.
DEFINITE: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


def definite(code: grpc.StatusCode) -> bool:
    """True when a call that failed with `code` certainly did nothing (see `DEFINITE`)."""
    return code in DEFINITE


def refusal_kind(code: grpc.StatusCode) -> ErrorKind:
    """The kind of a definite refusal, to raise it again as a domain error of the caller's."""
    if code == grpc.StatusCode.OUT_OF_RANGE:
        return ErrorKind.FAILED_PRECONDITION
    return ErrorKind(code.name)
