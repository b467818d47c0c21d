"""The routes from the contracts: every `google.api.http` binding of the services behind the
gateway (transcoding.py), and of the gateway's own composite methods.

A request is matched to its route (405 for a path that has other verbs, 404 for none), its
caller authenticated by bearer token and held to its rate limit, its body read within bounds
(bodies.py) and turned into the request message, and the message sent on: to the service over
gRPC, or to the gateway's flow of that method (found by its descriptor, authorised by the same
rules as the gateway's gRPC side). The answer is the response message as JSON, every field
written; a Create method answers 201.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from loyalty_kit.access import authorise
from loyalty_kit.audit import REASON_HEADER
from loyalty_kit.auth import AUTHORIZATION, TokenVerifier, caller_of_claims
from loyalty_kit.caller import set_current_caller
from loyalty_kit.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)
from loyalty_kit.logs import get_logger
from loyalty_kit.validation import refuse_hostile_text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from loyalty_gateway.adapters.backends import Backends
from loyalty_gateway.adapters.clients import DEFAULT_RATE
from loyalty_gateway.entrypoints.access import ACCESS
from loyalty_gateway.flows import Flow
from loyalty_gateway.http.bodies import parse_json, read_body
from loyalty_gateway.http.errors import error_body, status_of_error
from loyalty_gateway.http.exchange import REQUEST_ID, Exchange
from loyalty_gateway.http.metrics import note_route
from loyalty_gateway.http.transcoding import Route, set_field
from loyalty_gateway.settings import GatewaySettings

log = get_logger("loyalty.gateway.http")


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


def request_message(
    route: Route, request: Request, body: bytes, bound: dict[str, str], max_depth: int
) -> Message:
    """The route's request message from the body, the path's variables and the query."""
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


class RateLimits:
    """Per API client, a moving one-second window: in memory (each gateway replica counts its
    own, so N replicas let a client through N times its rate), or in Redis, where every replica
    counts into the same window (`LOYALTY_GATEWAY_RATE_LIMIT_STORAGE=redis://...`)."""

    def __init__(self, storage: str = "memory://") -> None:
        self.limiter = MovingWindowRateLimiter(rate_limit_storage(storage))

    async def hit(self, claims: dict[str, Any]) -> None:
        rate = int(claims.get("rps", DEFAULT_RATE))
        await self._count(
            RateLimitItemPerSecond(rate),
            (str(claims["sub"]),),
            f"more than {rate} requests a second",
            {"limit_per_second": str(rate)},
        )

    async def hit_address(self, route: str, address: str, per_minute: int) -> None:
        """An unauthenticated route's attempts from one client address, a moving minute: what
        keeps a client from guessing a link's token quickly."""
        await self._count(
            RateLimitItemPerMinute(per_minute),
            (route, address),
            f"more than {per_minute} attempts a minute from this address: wait and try again",
            {"limit_per_minute": str(per_minute)},
        )

    async def _count(
        self, item: RateLimitItem, keys: tuple[str, ...], message: str, about: dict[str, str]
    ) -> None:
        try:
            allowed = await self.limiter.hit(item, *keys)
        except Exception as error:  # the shared storage is down: serve rather than refuse all
            log.warning("rate limit storage unavailable: request not counted", error=repr(error))
            return
        if not allowed:
            reset, _remaining = await self.limiter.get_window_stats(item, *keys)
            retry = max(1, math.ceil(reset - time.time()))  # the library's clock
            raise ResourceExhausted(
                message,
                reason="RATE_LIMITED",
                metadata={**about, "retry_after_seconds": str(retry)},
            )


def rate_limit_storage(uri: str) -> Storage:
    """The limits library's asyncio storage for `uri` (memory://, redis://...)."""
    if uri.startswith("memory://"):
        return MemoryStorage()
    return storage_from_string(f"async+{uri}")


def reason_header(request: Request) -> list[tuple[str, str]]:
    """Why the caller acts (`X-Loyalty-Reason`, UTF-8 percent-encoded), passed on for the audit
    log of a request that has no reason field; anything but printable ASCII is dropped."""
    value = request.headers.get(REASON_HEADER, "").strip()
    if not value or not value.isascii() or not value.isprintable():
        return []
    return [(REASON_HEADER, value[:2000])]


def bearer(request: Request, verifier: TokenVerifier) -> tuple[str, dict[str, Any]]:
    """The request's bearer token and its verified claims."""
    header = request.headers.get(AUTHORIZATION, "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "send 'Authorization: Bearer <token>' (POST /v1/token gives one)",
            reason="TOKEN_MISSING",
        )
    return token.strip(), verifier.claims(token.strip())


class ContractRoutes:
    """The one Starlette endpoint behind every route of the contracts."""

    def __init__(
        self,
        routes: Sequence[Route],
        flows: dict[Any, Flow],
        backends: Backends,
        verifier: TokenVerifier,
        config: GatewaySettings,
        limits: RateLimits | None = None,
    ) -> None:
        # Matched with the templates with a custom verb first: `/v1/{member=members/*}:export`
        # is the export, not a GetMember of a member named `...:export` (a wildcard takes the
        # verb in).
        self.routes = sorted(routes, key=lambda route: not route.template.verb)
        self.flows = flows
        self.backends = backends
        self.verifier = verifier
        self.config = config
        self.limits = limits or RateLimits(config.rate_limit_storage)

    async def answer(self, request: Request) -> Response:
        exchange = Exchange(request)
        raw_path = request.scope.get("raw_path", b"").decode() or request.url.path
        path = raw_path.split("?", 1)[0]
        verb = request.method.lower()
        matched = [(r, b) for r in self.routes if (b := r.template.match(path)) is not None]
        try:
            found = next(((r, b) for r, b in matched if r.verb == verb), None)
            if found is None:
                if matched:
                    allowed = ", ".join(sorted({r.verb.upper() for r, _ in matched}))
                    return exchange.finish(method_not_allowed(request.method, allowed))
                raise NotFound(f"no route {request.method} {path}", reason="NO_ROUTE")
            route, bound = found
            note_route(request, route.template.text)
            token, claims = bearer(request, self.verifier)
            exchange.called_by(str(claims["sub"]))
            set_current_caller(caller_of_claims(claims))
            await self.limits.hit(claims)
            raw = await read_body(request, self.config.max_body_bytes)
            message = request_message(route, request, raw, bound, self.config.max_json_depth)
            metadata = [(AUTHORIZATION, f"Bearer {token}"), (REQUEST_ID, exchange.request_id)]
            metadata += reason_header(request)
            reply = await self._answer(route, message, (*metadata, *exchange.carrier.items()))
            body = json_format.MessageToDict(reply, always_print_fields_with_no_presence=True)
            status = 201 if route.creates else 200
            return exchange.finish(JSONResponse(body, status_code=status))
        except Exception as error:
            return exchange.failed(error, path)

    async def _answer(
        self, route: Route, message: Message, metadata: tuple[tuple[str, str], ...]
    ) -> Message:
        """The gateway's own flow of the method (authorised here by the rules its gRPC side
        checks), or the service's answer over gRPC."""
        flow = self.flows.get(route.method)
        if flow is not None:
            authorise(ACCESS, route.method.name, message)
            answer: Message = await flow(message, metadata)
            return answer
        call = self.backends.channel_for(route.service).unary_unary(
            route.grpc_path,
            request_serializer=type(message).SerializeToString,
            response_deserializer=route.response_type.FromString,
        )
        reply: Message = await call(
            message, metadata=metadata, timeout=self.config.request_deadline_seconds
        )
        return reply
