"""The gateway's HTTP/JSON side (Starlette on uvicorn).

Every route comes from the contracts' `google.api.http` annotations (transcoding.py); JSON is
read and written with protobuf's json_format (camelCase names, unpopulated fields written,
unknown fields refused). Failures answer with the google.rpc.Status as JSON and the HTTP code
of its gRPC code. Callers authenticate with a bearer token from `POST /v1/token`; the token
travels on to the services, which check it again. Each client has a rate limit (429 with
Retry-After). Bodies are bounded before they are parsed (bodies.py). Every response carries
`X-Request-Id`; W3C trace context flows in and back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import grpc
import uvicorn
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from loyalty_kit.access import authorise
from loyalty_kit.auth import (
    AUTHORIZATION,
)
from loyalty_kit.caller import Caller, set_current_caller
from loyalty_kit.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)
from loyalty_kit.logs import get_logger
from loyalty_kit.server import ServiceContext
from loyalty_kit.status import error_reference, internal_status
from loyalty_kit.validation import refuse_hostile_text
from opentelemetry import propagate, trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from loyalty_gateway import openapi
from loyalty_gateway.access import ACCESS
from loyalty_gateway.backends import BACKENDS, exposed_services, shared_backends
from loyalty_gateway.bodies import BODY_TOO_LARGE, parse_json, read_body
from loyalty_gateway.clients import DEFAULT_RATE, ClientStore
from loyalty_gateway.composite import SERVICE as COMPOSITE
from loyalty_gateway.composite import composer_of
from loyalty_gateway.errors import (
    error_body,
    http_code,
    retry_after,
    status_of_error,
    status_of_failure,
    status_of_rpc_error,
)
from loyalty_gateway.keys import Keys
from loyalty_gateway.settings import GatewaySettings
from loyalty_gateway.transcoding import Route as RpcRoute
from loyalty_gateway.transcoding import routes_of, set_field

log = get_logger("loyalty.gateway")
tracer = trace.get_tracer("loyalty.gateway")
REQUEST_ID = "x-request-id"
CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def caller_of_claims(claims: dict[str, Any]) -> Caller:
    return Caller(
        unit=str(claims.get("unit", "")),
        client_id=str(claims["sub"]),
        scopes=frozenset(str(claims.get("scope", "")).split()),
    )


def _json(status: Any) -> JSONResponse:
    response = JSONResponse(error_body(status), status_code=http_code(status))
    if (after := retry_after(status)) is not None:
        response.headers["Retry-After"] = after
    return response


def _refusal(error: DomainError) -> JSONResponse:
    response = _json(status_of_error(error))
    if error.reason == BODY_TOO_LARGE:
        # The rest of the body is not wanted: the connection closes after the answer instead
        # of reading it to the end.
        response.headers["Connection"] = "close"
    elif isinstance(error, ResourceExhausted):
        response.headers["Retry-After"] = error.metadata.get("retry_after_seconds", "1")
    return response


def method_not_allowed(method: str, allowed: str) -> JSONResponse:
    """405 for a path that exists with other verbs: the Status says UNIMPLEMENTED (what gRPC
    would answer for a method it does not have) and its HTTP code is the 405 it travels as."""
    status = status_of_error(
        NotFound(f"{method} is not allowed here (allowed: {allowed})", reason="METHOD_NOT_ALLOWED")
    )
    status.code = code_pb2.UNIMPLEMENTED
    body = error_body(status)
    body["error"]["code"] = 405
    return JSONResponse(body, status_code=405, headers={"Allow": allowed})


def _request_message(
    route: RpcRoute, request: Request, body: bytes, bound: dict[str, str], max_depth: int
) -> Message:
    message = route.request_type()
    if route.body:
        target = message if route.body == "*" else getattr(message, route.body)
        data = parse_json(body, max_depth)
        if not isinstance(data, dict):
            raise InvalidArgument.of([FieldViolation("body", "a JSON object")])
        try:
            json_format.ParseDict(data, target)
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
            raise InvalidArgument.of([FieldViolation("body", str(error))]) from None
    problems: list[FieldViolation] = []
    for path, value in bound.items():
        try:
            set_field(message, path, value)
        except ValueError as error:
            problems.append(FieldViolation(path, str(error)))
    if route.body != "*":
        for key, value in parse_qsl(request.url.query, keep_blank_values=True):
            if key in bound or key in ("access_token",):
                continue
            try:
                set_field(message, key, value)
            except ValueError as error:
                problems.append(FieldViolation(key, str(error)))
    if problems:
        raise InvalidArgument.of(problems)
    refuse_hostile_text(message)  # the services check again; the composites run here
    return message


def build_app(context: ServiceContext) -> Starlette:
    gateway = GatewaySettings()
    backends = shared_backends(context)
    services = [s for found in exposed_services().values() for s in found]
    routes = routes_of(services)
    # Matched with the templates with a custom verb first: `/v1/{member=members/*}:export` is the
    # export, not a GetMember of a member named `...:export` (a wildcard takes the verb in).
    matching = sorted(routes, key=lambda route: not route.template.verb)
    keys = Keys(context)
    limiter = MovingWindowRateLimiter(MemoryStorage())
    document = openapi.document(routes)

    # -- plumbing --------------------------------------------------------------------------

    def authenticate(request: Request) -> tuple[str, dict[str, Any]]:
        header = request.headers.get(AUTHORIZATION, "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "send 'Authorization: Bearer <token>' (POST /v1/token gives one)",
                reason="TOKEN_MISSING",
            )
        return token.strip(), keys.verifier.claims(token.strip())

    async def limit(claims: dict[str, Any]) -> None:
        rate = int(claims.get("rps", DEFAULT_RATE))
        item = RateLimitItemPerSecond(rate)
        if not await limiter.hit(item, str(claims["sub"])):
            reset, _remaining = await limiter.get_window_stats(item, str(claims["sub"]))
            retry = max(1, math.ceil(reset - time.time()))
            raise ResourceExhausted(
                f"more than {rate} requests a second",
                reason="RATE_LIMITED",
                metadata={"limit_per_second": str(rate), "retry_after_seconds": str(retry)},
            )

    @contextlib.contextmanager
    def traced(request: Request, name: str) -> Iterator[dict[str, str]]:
        """A server span continuing the caller's trace; yields the headers to pass on."""
        parent = propagate.extract(dict(request.headers))
        with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield carrier

    def finish(response: Response, request_id: str, carrier: dict[str, str]) -> Response:
        response.headers["X-Request-Id"] = request_id
        if "traceparent" in carrier:
            response.headers["traceresponse"] = carrier["traceparent"]
        return response

    async def composite(method: str, message: Any, md: tuple[tuple[str, str], ...]) -> Any:
        """The gateway's own methods, run here rather than through its gRPC port (authorised
        by the same rules its gRPC interceptor checks)."""
        authorise(ACCESS, method, message)
        return await composer_of(context).call(method, message, md)

    # -- the routes from the contracts -----------------------------------------------------

    async def dispatch(request: Request) -> Response:
        request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
        raw_path = request.scope.get("raw_path", b"").decode() or request.url.path
        path = raw_path.split("?", 1)[0]
        verb = request.method.lower()
        matched = [(r, b) for r in matching if (b := r.template.match(path)) is not None]
        carrier: dict[str, str] = {}
        try:
            found = next(((r, b) for r, b in matched if r.verb == verb), None)
            if found is None:
                if matched:
                    allowed = ", ".join(sorted({r.verb.upper() for r, _ in matched}))
                    response: Response = method_not_allowed(request.method, allowed)
                    return finish(response, request_id, carrier)
                raise NotFound(f"no route {request.method} {path}", reason="NO_ROUTE")
            route, bound = found
            with traced(request, f"{request.method} {route.template.text}") as carrier:
                token, claims = authenticate(request)
                set_current_caller(caller_of_claims(claims))
                await limit(claims)
                raw = await read_body(request, gateway.max_body_bytes)
                message = _request_message(route, request, raw, bound, gateway.max_json_depth)
                metadata = [(AUTHORIZATION, f"Bearer {token}"), (REQUEST_ID, request_id)]
                metadata += list(carrier.items())
                if route.service.full_name == COMPOSITE:
                    reply = await composite(route.method.name, message, tuple(metadata))
                else:
                    call = backends.channel_for(route.service).unary_unary(
                        route.grpc_path,
                        request_serializer=type(message).SerializeToString,
                        response_deserializer=route.response_type.FromString,
                    )
                    reply = await call(
                        message,
                        metadata=tuple(metadata),
                        timeout=gateway.request_deadline_seconds,
                    )
                body = json_format.MessageToDict(reply, always_print_fields_with_no_presence=True)
                status = 201 if route.creates else 200
                return finish(JSONResponse(body, status_code=status), request_id, carrier)
        except DomainError as error:
            return finish(_refusal(error), request_id, carrier)
        except grpc.aio.AioRpcError as error:
            return finish(_json(status_of_rpc_error(error)), request_id, carrier)
        except Exception as error:
            if (known := status_of_failure(error)) is None:
                raise
            log.warning("database unavailable", path=path, error=type(error).__name__)
            return finish(_json(known), request_id, carrier)

    # -- tokens ----------------------------------------------------------------------------

    async def token(request: Request) -> Response:
        """OAuth 2.0 client credentials (RFC 6749 4.4): client id and secret by HTTP Basic or
        in the form (or a JSON body), a bearer token back."""
        request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
        try:
            client_id, secret = await _credentials(request, gateway)
            if not CLIENT_ID.fullmatch(client_id) or "\x00" in secret:
                raise Unauthenticated("unknown client or wrong secret", reason="INVALID_CLIENT")
            if keys.signing is None:
                raise Unauthenticated(
                    "this gateway has no signing key (LOYALTY_GATEWAY_SIGNING_KEY)",
                    reason="NO_SIGNING_KEY",
                )
            async with context.uow() as uow:
                client = await ClientStore(uow.session).authenticate(client_id, secret)
            access, _ = keys.signing.issue(
                client.caller(), keys.ttl, extra={"rps": client.rate_per_second}
            )
            body = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": keys.ttl,
                "scope": " ".join(client.scopes),
                "unit": client.unit,
            }
            return finish(JSONResponse(body, headers={"Cache-Control": "no-store"}), request_id, {})
        except DomainError as error:
            return finish(_refusal(error), request_id, {})
        except Exception as error:
            if (known := status_of_failure(error)) is None:
                raise
            log.warning("database unavailable", path="/v1/token", error=type(error).__name__)
            return finish(_json(known), request_id, {})

    # -- health, contract, docs ------------------------------------------------------------

    async def check(name: str) -> str:
        stub = health_pb2_grpc.HealthStub(backends.channels[name])
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.aio.AioRpcError as error:
            return f"UNAVAILABLE ({error.code().name})"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def healthz(_request: Request) -> JSONResponse:
        statuses = await asyncio.gather(*(check(name) for name in BACKENDS))
        services = dict(zip(BACKENDS, statuses, strict=True))
        ok = all(status == "SERVING" for status in statuses)
        return JSONResponse(
            {"status": "SERVING" if ok else "DEGRADED", "services": services},
            status_code=200 if ok else 503,
        )

    async def openapi_json(_request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def docs(_request: Request) -> HTMLResponse:
        return HTMLResponse(openapi.DOCS_PAGE)

    async def unexpected(request: Request, _error: Exception) -> Response:
        """Anything unforeseen: INTERNAL with a reference, nothing of the error's text."""
        reference = error_reference()
        log.exception("http request failed", path=request.url.path, reference=reference)
        return _json(internal_status("gateway", reference))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await backends.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/openapi.json", openapi_json),
            Route("/docs", docs),
            Mount("/docs/static", StaticFiles(directory=openapi.swagger_ui_dir()), name="static"),
            Route("/v1/token", token, methods=["POST"]),
            Route("/{path:path}", dispatch, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: unexpected},
    )


async def _credentials(request: Request, gateway: GatewaySettings) -> tuple[str, str]:
    header = request.headers.get(AUTHORIZATION, "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            raise Unauthenticated("malformed Basic credentials", reason="INVALID_CLIENT") from None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    body = await read_body(request, gateway.max_body_bytes)
    if request.headers.get("content-type", "").startswith("application/json"):
        data = parse_json(body, gateway.max_json_depth)
        if not isinstance(data, dict):
            raise InvalidArgument.of([FieldViolation("body", "a JSON object")])
        fields = {k: str(v) for k, v in data.items()}
    else:  # application/x-www-form-urlencoded (RFC 6749)
        fields = dict(parse_qsl(body.decode(errors="replace")))
    grant = fields.get("grant_type", fields.get("grantType", "client_credentials"))
    client_id = fields.get("client_id", fields.get("clientId", ""))
    secret = fields.get("client_secret", fields.get("clientSecret", ""))
    problems = []
    if grant != "client_credentials":
        problems.append(FieldViolation("grant_type", "client_credentials"))
    if not client_id:
        problems.append(FieldViolation("client_id", "required"))
    if not secret:
        problems.append(FieldViolation("client_secret", "required"))
    if problems:
        raise InvalidArgument.of(problems)
    return client_id, secret


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the kit owns SIGTERM/SIGINT for the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_job(context: ServiceContext) -> Callable[[], Awaitable[None]]:
    settings = context.settings

    async def run() -> None:
        config = uvicorn.Config(
            build_app(context),
            host=settings.host,
            port=settings.gateway_http_port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        server = _Server(config)
        context.extras["http_server"] = server

        async def stop_when_asked() -> None:
            await context.stopping.wait()
            server.should_exit = True

        watcher = asyncio.create_task(stop_when_asked())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    return run
