"""google.rpc.Status as HTTP: the code mapping of google/rpc/code.proto, the Status as the
JSON body in the AIP-193 shape (`{"error": {"code", "message", "status", "details"}}`), with
its ErrorInfo and field violations. UNAVAILABLE (a service or the gateway's own database down)
is 503 with `Retry-After`; a refusal carrying a RetryInfo (a rate limit's 429) has its wait
there too."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from loyalty_kit.db import DatabaseUnavailable, database_unavailable
from loyalty_kit.errors import DomainError
from loyalty_kit.status import error_info, from_rpc_error, status_of, upstream_status

HTTP_CODES = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}

# Reasons whose HTTP code says more than their gRPC code's: a body refused unread is 413, an
# upload of a type that is no import file 415.
HTTP_CODES_OF_REASONS = {"BODY_TOO_LARGE": 413, "UNSUPPORTED_MEDIA_TYPE": 415}

RETRY_AFTER_SECONDS = "1"

# The detail types the JSON body may carry: imported so json_format can resolve them.
DETAIL_TYPES = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
)


def http_code(status: status_pb2.Status) -> int:
    info = error_info(status)
    if info is not None and info.reason in HTTP_CODES_OF_REASONS:
        return HTTP_CODES_OF_REASONS[info.reason]
    return HTTP_CODES.get(status.code, 500)


def error_body(status: status_pb2.Status) -> dict[str, Any]:
    return {
        "error": {
            "code": http_code(status),
            "message": status.message,
            "status": code_pb2.Code.Name(status.code),
            "details": [json_format.MessageToDict(detail) for detail in status.details],
        }
    }


def status_of_rpc_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The service's own Status, or one made for a failure that carried none (a service
    down: UNAVAILABLE; a deadline: DEADLINE_EXCEEDED)."""
    return from_rpc_error(error) or upstream_status(error, "gateway")


def status_of_error(error: DomainError) -> status_pb2.Status:
    return status_of(error, "gateway")


def status_of_failure(error: Exception) -> status_pb2.Status | None:
    """The status of a failure that is no bug, or None: the gateway's own database
    unavailable (its API clients, its checkout log, its kept answers) is UNAVAILABLE."""
    if database_unavailable(error):
        return status_of(DatabaseUnavailable(), "gateway")
    return None


def retry_after(status: status_pb2.Status) -> str | None:
    """The `Retry-After` of an answer: the wait its RetryInfo names (a rate limit's, whole
    seconds rounded up), else worth retrying soon when UNAVAILABLE."""
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            nanos = info.retry_delay.seconds * 10**9 + info.retry_delay.nanos
            return str(max(1, -(-nanos // 10**9)))
    return RETRY_AFTER_SECONDS if status.code == code_pb2.UNAVAILABLE else None
