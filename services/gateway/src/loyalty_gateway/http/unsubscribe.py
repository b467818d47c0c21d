"""`/v1/unsubscribe`: the link in a member's message, with no bearer token (the message's
token is the authority). GET only shows a page with a button: mail scanners and link
previews fetch links, and must not unsubscribe anyone. POST acts: the token from the query
(RFC 8058 one-click, `List-Unsubscribe-Post: List-Unsubscribe=One-Click`), a form or a JSON
body; the gateway calls engagement's Unsubscribe on its own account, which withdraws the
member's consent for the message's purpose through identity, idempotently. A JSON request is
answered with JSON, anything else with a page. Every attempt counts against the client
address's limit (`LOYALTY_GATEWAY_UNSUBSCRIBE_ATTEMPTS_PER_MINUTE`, a moving minute, in the
gateway's rate limit storage): past it the answer is 429 with Retry-After, so tokens cannot be
guessed quickly."""

from __future__ import annotations

import html
import json
from urllib.parse import parse_qsl

from google.protobuf import json_format
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.engagement.v1.engagement_service_pb2_grpc import EngagementServiceStub
from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.kernel.units import GROUP
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from loyalty_gateway.adapters.backends import Backends
from loyalty_gateway.http.bodies import read_body
from loyalty_gateway.http.contracts import RateLimits
from loyalty_gateway.http.exchange import REQUEST_ID, Exchange
from loyalty_gateway.http.metrics import note_route

PATH = "/v1/unsubscribe"
MAX_BODY = 4096
CALLER = Caller(unit=GROUP, client_id="gateway-unsubscribe", scopes=frozenset())

_CONFIRM = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>Unsubscribe</title><body><h1>Stop these messages?</h1>
<form method="post" action="{path}"><input type="hidden" name="token" value="{token}">
<button type="submit">Unsubscribe</button></form></body></html>"""
_DONE = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>Unsubscribed</title><body><h1>You will not receive these messages any more.</h1>
</body></html>"""


class UnsubscribeEndpoint:
    def __init__(
        self,
        backends: Backends,
        credentials: ServiceCredentials,
        deadline_seconds: float,
        limits: RateLimits,
        attempts_per_minute: int,
    ) -> None:
        self.backends = backends
        self.credentials = credentials
        self.deadline_seconds = deadline_seconds
        self.limits = limits
        self.attempts_per_minute = attempts_per_minute

    async def answer(self, request: Request) -> Response:
        note_route(request, PATH)
        exchange = Exchange(request)
        try:
            address = request.client.host if request.client else "unknown"
            await self.limits.hit_address(PATH, address, self.attempts_per_minute)
            if request.method == "GET":
                token = request.query_params.get("token", "")
                page = _CONFIRM.format(path=PATH, token=html.escape(token, quote=True))
                return exchange.finish(HTMLResponse(page, headers={"Cache-Control": "no-store"}))
            token = await self._token(request)
            stub = EngagementServiceStub(self.backends.channels["engagement"])
            reply = await stub.Unsubscribe(
                engagement_pb.UnsubscribeRequest(token=token),
                metadata=(
                    *self.credentials.metadata(CALLER),
                    (REQUEST_ID, exchange.request_id),
                    *exchange.carrier.items(),
                ),
                timeout=self.deadline_seconds,
            )
            if "json" in request.headers.get("content-type", ""):
                body = json_format.MessageToDict(reply, always_print_fields_with_no_presence=True)
                return exchange.finish(JSONResponse(body))
            return exchange.finish(HTMLResponse(_DONE))
        except Exception as error:
            return exchange.failed(error, PATH)

    async def _token(self, request: Request) -> str:
        token = request.query_params.get("token", "")
        raw = await read_body(request, MAX_BODY)
        kind = request.headers.get("content-type", "")
        if "json" in kind:
            try:
                data = json.loads(raw or b"{}")
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise InvalidArgument.of([FieldViolation("body", "a JSON object")])
            token = str(data.get("token", "")) or token
        elif raw:
            token = dict(parse_qsl(raw.decode(errors="replace"))).get("token", "") or token
        if not token:
            raise InvalidArgument.of([FieldViolation("token", "the message's unsubscribe token")])
        return token
