"""The server interceptor: every call passes the same named steps, in this order:

1. `record_deadline`   the inbound deadline, which outbound calls inherit (`deadlines`), and
                       the request id (`x-request-id`), which log lines, outbound calls and
                       events carry (`correlation`);
2. `Authentication`    who is calling (a verified token, else trusted headers) and whether the
                       service's access rule for the method lets them (`loyalty_kit.access`);
                       a member's own token also passes the service's member check, where it
                       has one (identity: the token's session still open, its member there);
3. request checks      a body that decodes and text without hostile characters;
4. `error_status`      what any failure becomes: domain errors their google.rpc.Status, a
                       failed call to a peer its status, bad data INVALID_ARGUMENT, a database
                       outage UNAVAILABLE, anything else INTERNAL with a reference only;
5. `AccessLog`         one line per call: method, code, milliseconds; and the call counted
                       and timed in the service's metrics (`loyalty_kit.metrics`);
6. the audit log       a method whose rule is `audited` has its entry drafted before
                       authentication; a commit writes it with the change, and a call that
                       committed nothing (refused, failed) has it written afterwards with its
                       code (`loyalty_kit.audit`).

Servicers stay thin: no try/except ladders, they just raise `DomainError`s.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
from google.rpc import status_pb2
from grpc.aio import AbortError
from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded

from loyalty_kit import access as access_rules
from loyalty_kit import audit
from loyalty_kit import metrics as service_metrics
from loyalty_kit.access import Rule, method_name
from loyalty_kit.auth import TokenVerifier
from loyalty_kit.caller import Caller, current_caller, set_current_caller
from loyalty_kit.correlation import request_id_of, set_request_id
from loyalty_kit.db import DatabaseUnavailable, database_unavailable
from loyalty_kit.deadlines import set_inbound_deadline
from loyalty_kit.errors import DomainError, InvalidArgument
from loyalty_kit.logs import get_logger, rpc_line
from loyalty_kit.metrics import ServiceMetrics
from loyalty_kit.status import (
    error_reference,
    internal_status,
    status_of,
    to_grpc_status,
    upstream_status,
)
from loyalty_kit.validation import refuse_hostile_text

log = get_logger("loyalty.rpc")

# Probes and tooling, kept out of the access log (and out of traces, see telemetry).
QUIET_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


# PostgreSQL's data exceptions (SQLSTATE class 22) are bad input that slipped past validation:
# answered as INVALID_ARGUMENT, never as INTERNAL (a second line of defence).
DATA_EXCEPTIONS = {
    "22021": "text must not contain NUL characters",
    "22P05": "text must not contain NUL characters",
    "22003": "a number is out of range",
    "22008": "a date or time is out of range",
}


def invalid_data(error: Exception) -> DomainError | None:
    found = error if isinstance(error, asyncpg.PostgresError) else getattr(error, "orig", None)
    code = getattr(found, "sqlstate", None) or getattr(
        getattr(found, "__cause__", None), "sqlstate", None
    )
    if not isinstance(code, str) or not code.startswith("22"):
        return None
    return InvalidArgument(DATA_EXCEPTIONS.get(code, "a value is not valid"), reason="INVALID_DATA")


def unavailable(error: Exception, method: str) -> DomainError | None:
    """The database unreachable or a connection to it broken: UNAVAILABLE, which callers may
    retry, and a warning without a traceback (one outage, many calls)."""
    if not database_unavailable(error):
        return None
    log.warning("database unavailable", method=method, error=type(error).__name__)
    return DatabaseUnavailable()


class Malformed:
    """What a request body that does not decode becomes (a stray end-group tag, a truncated
    varint, invalid UTF-8 in a string, nesting too deep): grpc would answer UNKNOWN naming the
    message type; the call is refused as INVALID_ARGUMENT / MALFORMED_REQUEST instead."""


MALFORMED = Malformed()


def tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def read(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError, RecursionError, ...: whatever the bytes provoke
            return MALFORMED

    return read


def malformed_request() -> InvalidArgument:
    return InvalidArgument(
        "the request body is not a valid protobuf message of this method",
        reason="MALFORMED_REQUEST",
    )


def refusing_malformed(behavior: Any) -> Any:
    """`behavior` behind the checks every decoded request passes (after authorisation): a body
    that decodes, and text in every string (`validation.refuse_hostile_text`)."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request is MALFORMED:
            raise malformed_request()
        refuse_hostile_text(request)
        return await behavior(request, context)

    return unary


def checked_messages(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's messages, each through the checks a unary request passes; the first
    was read (and checked) already, to authorise the call on it."""

    async def messages() -> AsyncIterator[Any]:
        yield first
        async for message in rest:
            if message is MALFORMED:
                raise malformed_request()
            refuse_hostile_text(message)
            yield message

    return messages()


def refusing_malformed_stream(behavior: Any) -> Any:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if request is MALFORMED:
            raise malformed_request()
        refuse_hostile_text(request)
        async for item in behavior(request, context):
            yield item

    return stream


# --- step 1: the deadline -----------------------------------------------------------------------
def record_deadline(context: grpc.aio.ServicerContext) -> None:
    set_inbound_deadline(context.time_remaining())
    set_request_id(request_id_of(context.invocation_metadata()))


# --- step 2: authentication and the access rule ---------------------------------------------
class Authentication:
    def __init__(self, verifier: TokenVerifier, access: Mapping[str, Rule] | None = None) -> None:
        # Who is calling: a verified bearer token, else the caller headers (if trusted).
        self.verifier = verifier
        # What each method allows: one rule per method name; a method without one is refused.
        self.access: Mapping[str, Rule] = access or {}

    def check(self, method: str, request: Any, metadata: Any) -> None:
        """Authenticate the caller, then check the method's rule (the scopes even when the
        body did not decode; the unit it acts for once it did)."""
        caller: Caller = self.verifier.caller_of(metadata)
        set_current_caller(caller)
        decoded = None if request is MALFORMED else request
        access_rules.check(self.access, method_name(method), decoded, caller)

    def check_unit(self, method: str, request: Any) -> None:
        """The rule's unit on a request read after the caller was authenticated (the first
        message of a client stream)."""
        access_rules.check(self.access, method_name(method), request, current_caller())


# --- step 4: error mapping ------------------------------------------------------------------
def error_status(error: Exception, service: str, method: str) -> tuple[str, status_pb2.Status]:
    """The status a failed call answers with, and the code for the access log."""
    if isinstance(error, DomainError):
        return error.kind.value, status_of(error, service)
    if isinstance(error, grpc.aio.AioRpcError):
        # A call to another service failed and nothing handled it: pass its status on (a
        # deadline stays a deadline, an unavailable dependency stays UNAVAILABLE).
        return error.code().name, upstream_status(error, service)
    known = invalid_data(error) or unavailable(error, method)
    if known is not None:
        return known.kind.value, status_of(known, service)
    reference = error_reference()
    log.exception("rpc failed", method=method, reference=reference)
    return "INTERNAL", internal_status(service, reference)


# --- step 5: the access log -----------------------------------------------------------------
@dataclass
class AccessLog:
    method: str
    code: str = "OK"

    @classmethod
    @contextmanager
    def of(
        cls, method: str, metrics: ServiceMetrics | None = None, kind: str = "unary"
    ) -> Iterator[AccessLog]:
        started = time.perf_counter()
        entry = cls(method)
        try:
            with service_metrics.use(metrics):
                yield entry
        finally:
            seconds = time.perf_counter() - started
            rpc_line(method, entry.code, round(seconds * 1000, 2))
            if metrics is not None:
                metrics.rpc(kind, method, entry.code, seconds)


def aborted_code(context: grpc.aio.ServicerContext) -> str:
    """The code a handler aborted with itself (`context.abort`)."""
    with contextlib.suppress(Exception):
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            return str(code.name)
    return "ABORTED_BY_HANDLER"


# Writes an audit entry on its own (a call that committed nothing): the service's outbox.
AuditWriter = Callable[[AuditEntryRecorded], Awaitable[None]]
# Checks a member's own token beyond its signature, where a service knows more (identity keeps
# the sessions: a token of an ended session or an erased member is refused before it expires).
MemberTokenCheck = Callable[[Caller], Awaitable[None]]


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """The steps above around every method of the service (probes and tooling excepted)."""

    def __init__(
        self,
        service: str,
        verifier: TokenVerifier,
        access: Mapping[str, Rule] | None = None,
        metrics: ServiceMetrics | None = None,
        audit_writer: AuditWriter | None = None,
        member_check: MemberTokenCheck | None = None,
    ) -> None:
        self.service = service
        self.authentication = Authentication(verifier, access)
        self.metrics = metrics
        self.audit_writer = audit_writer
        self.member_check = member_check

    async def _authenticate(self, method: str, request: Any, metadata: Any) -> None:
        """Step 2: who is calling and whether the rule lets them; a member's own token also
        passes the service's member check, if it has one."""
        self.authentication.check(method, request, metadata)
        caller = current_caller()
        if caller.member and self.member_check is not None:
            await self.member_check(caller)

    def _begin_audit(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        found = self.authentication.access.get(method_name(method))
        audit.begin(
            self.service,
            method_name(method),
            request,
            context.invocation_metadata(),
            audited=found is not None and found.audited and self.audit_writer is not None,
        )

    async def _end_audit(self, code: str) -> None:
        """The entry of a call no commit carried, with the call's code."""
        draft = audit.pending()
        if draft is None or self.audit_writer is None:
            return
        try:
            await self.audit_writer(audit.entry(draft, code))
            draft.written = True
        except Exception as error:  # the answer stands; the outage is logged
            log.warning("audit entry not written", method=draft.method, error=repr(error))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(QUIET_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, refusing_malformed(handler.unary_unary)),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, refusing_malformed_stream(handler.unary_stream)),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_client_stream(method, handler.stream_unary),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap_unary(self, method: str, behavior: Any) -> Any:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with AccessLog.of(method, self.metrics) as entry:
                record_deadline(context)
                self._begin_audit(method, request, context)
                try:
                    await self._authenticate(method, request, context.invocation_metadata())
                    answer = await behavior(request, context)
                except AbortError:
                    entry.code = aborted_code(context)
                    await self._end_audit(entry.code)
                    raise
                except Exception as error:
                    entry.code, status = error_status(error, self.service, method)
                    await self._end_audit(entry.code)
                    await context.abort_with_status(to_grpc_status(status))
                await self._end_audit("OK")
                return answer

        return unary

    def _wrap_stream(self, method: str, behavior: Any) -> Any:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with AccessLog.of(method, self.metrics, kind="server_stream") as entry:
                record_deadline(context)
                try:
                    await self._authenticate(method, request, context.invocation_metadata())
                    async for item in behavior(request, context):
                        yield item
                except AbortError:
                    entry.code = aborted_code(context)
                    raise
                except Exception as error:
                    entry.code, status = error_status(error, self.service, method)
                    await context.abort_with_status(to_grpc_status(status))

        return stream

    def _wrap_client_stream(self, method: str, behavior: Any) -> Any:
        """A client-streaming call (an upload): the caller is authenticated and the method's
        scopes checked before anything is read; the rule's unit (if it names one) is checked
        on the first message, which is read before the servicer runs."""

        async def upload(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            with AccessLog.of(method, self.metrics, kind="client_stream") as entry:
                record_deadline(context)
                self._begin_audit(method, None, context)
                stream: AsyncIterator[Any] | None = None
                try:
                    await self._authenticate(method, MALFORMED, context.invocation_metadata())
                    stream = aiter(requests)
                    first = await anext(stream, None)
                    if first is MALFORMED:
                        raise malformed_request()
                    if first is not None:
                        refuse_hostile_text(first)
                        audit.describe(first)
                        self.authentication.check_unit(method, first)
                    answer = await behavior(
                        checked_messages(first, stream) if first is not None else _empty(),
                        context,
                    )
                    await _drain(stream)  # a retry answered at once: the parts still coming
                except AbortError:
                    entry.code = aborted_code(context)
                    await self._end_audit(entry.code)
                    raise
                except Exception as error:
                    entry.code, status = error_status(error, self.service, method)
                    if stream is not None:
                        await _drain(stream)
                    await self._end_audit(entry.code)
                    await context.abort_with_status(to_grpc_status(status))
                await self._end_audit("OK")
                return answer

        return upload


async def _empty() -> AsyncIterator[Any]:
    return
    yield


# At most this many messages of a client stream are read past an answer (2 GiB in 1 MiB parts).
DRAIN_MESSAGES = 2048


async def _drain(stream: AsyncIterator[Any]) -> None:
    """Read (and drop) what the client still sends once the answer is known. A client that is
    still writing its parts when the call ends would see its next write fail with gRPC's own
    INTERNAL "Internal error from Core" instead of this answer (a refused spec, an import
    created before): answered after its last part, it hears the answer. Bounded by a count (and
    the call's deadline); a stream that breaks meanwhile changes nothing."""
    with contextlib.suppress(Exception):
        read = 0
        async for _ in stream:
            read += 1
            if read >= DRAIN_MESSAGES:
                return
