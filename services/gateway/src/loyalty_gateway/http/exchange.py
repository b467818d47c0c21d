"""What every HTTP exchange shares: its request id (`X-Request-Id`, the caller's or a new one,
as the access log has it), the trace context to pass on to the services (the request's server
span, which continues the caller's W3C trace: `traceresponse` back; access.py), and failures as
google.rpc.Status JSON (`errors.py`): a refusal with its HTTP code, the gateway's own database
unavailable as 503, anything unforeseen as INTERNAL with a reference."""

from __future__ import annotations

import grpc
from google.rpc import status_pb2
from loyalty_kit.errors import DomainError, ResourceExhausted
from loyalty_kit.logs import get_logger
from loyalty_kit.status import error_reference, internal_status
from opentelemetry import propagate
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from loyalty_gateway.http.access import entry_of
from loyalty_gateway.http.bodies import BODY_TOO_LARGE
from loyalty_gateway.http.errors import (
    error_body,
    http_code,
    retry_after,
    status_of_error,
    status_of_failure,
    status_of_rpc_error,
)

log = get_logger("loyalty.gateway")
REQUEST_ID = "x-request-id"


class Exchange:
    """One HTTP request and its answer's headers: the request id, and the trace context to
    pass on to the services (`carrier`)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.entry = entry_of(request)
        self.request_id = self.entry.request_id
        self.carrier: dict[str, str] = {}
        propagate.inject(self.carrier)

    def called_by(self, client: str) -> None:
        """The API client calling, once authenticated (for the access log)."""
        self.entry.client = client

    def finish(self, response: Response) -> Response:
        response.headers["X-Request-Id"] = self.request_id
        if "traceparent" in self.carrier:
            response.headers["traceresponse"] = self.carrier["traceparent"]
        return response

    def failed(self, error: Exception, path: str) -> Response:
        """The answer to a failure that is no bug: a refusal, a service's Status, the gateway's
        own database unavailable. Anything else is raised again (see `unexpected`)."""
        if isinstance(error, DomainError):
            return self.finish(refusal(error))
        if isinstance(error, grpc.aio.AioRpcError):
            return self.finish(status_response(status_of_rpc_error(error)))
        known = status_of_failure(error)
        if known is None:
            raise error
        log.warning("database unavailable", path=path, error=type(error).__name__)
        return self.finish(status_response(known))


def status_response(status: status_pb2.Status) -> JSONResponse:
    response = JSONResponse(error_body(status), status_code=http_code(status))
    if (after := retry_after(status)) is not None:
        response.headers["Retry-After"] = after
    return response


def refusal(error: DomainError) -> JSONResponse:
    response = status_response(status_of_error(error))
    if error.reason == BODY_TOO_LARGE:
        # The rest of the body is not wanted: the connection closes after the answer instead
        # of reading it to the end.
        response.headers["Connection"] = "close"
    elif isinstance(error, ResourceExhausted):
        response.headers["Retry-After"] = error.metadata.get("retry_after_seconds", "1")
    return response


async def unexpected(request: Request, _error: Exception) -> Response:
    """Anything unforeseen: INTERNAL with a reference, nothing of the error's text."""
    reference = error_reference()
    log.exception("http request failed", path=request.url.path, reference=reference)
    return status_response(internal_status("gateway", reference))
