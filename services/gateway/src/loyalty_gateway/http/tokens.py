"""`POST /v1/token`: OAuth 2.0 client credentials (RFC 6749 4.4). An API client's id and secret,
by HTTP Basic or in the form (or a JSON body), for a bearer token signed with the gateway's key,
carrying the client, its unit, scopes and rate limit."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from urllib.parse import parse_qsl

from loyalty_kit.auth import AUTHORIZATION
from loyalty_kit.errors import FieldViolation, InvalidArgument, Unauthenticated
from loyalty_kit.uow import UnitOfWork
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from loyalty_gateway.adapters.clients import ClientStore
from loyalty_gateway.adapters.keys import Keys
from loyalty_gateway.http.bodies import parse_json, read_body
from loyalty_gateway.http.exchange import Exchange
from loyalty_gateway.settings import GatewaySettings

CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


class TokenEndpoint:
    def __init__(
        self, keys: Keys, uow_factory: Callable[[], UnitOfWork], config: GatewaySettings
    ) -> None:
        self.keys = keys
        self.uow = uow_factory
        self.config = config

    async def answer(self, request: Request) -> Response:
        exchange = Exchange(request)
        try:
            client_id, secret = await credentials(request, self.config)
            if not CLIENT_ID.fullmatch(client_id) or "\x00" in secret:
                raise Unauthenticated("unknown client or wrong secret", reason="INVALID_CLIENT")
            signing = self.keys.signing
            if signing is None:
                raise Unauthenticated(
                    "this gateway has no signing key (LOYALTY_GATEWAY_SIGNING_KEY)",
                    reason="NO_SIGNING_KEY",
                )
            async with self.uow() as uow:
                client = await ClientStore(uow.session).authenticate(client_id, secret)
            exchange.called_by(client.client_id)
            access, _ = signing.issue(
                client.caller(), self.keys.ttl, extra={"rps": client.rate_per_second}
            )
            body = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.keys.ttl,
                "scope": " ".join(client.scopes),
                "unit": client.unit,
            }
            return exchange.finish(JSONResponse(body, headers={"Cache-Control": "no-store"}))
        except Exception as error:
            return exchange.failed(error, "/v1/token")


async def credentials(request: Request, config: GatewaySettings) -> tuple[str, str]:
    """The client id and secret of a token request (HTTP Basic, a form or a JSON body)."""
    header = request.headers.get(AUTHORIZATION, "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            raise Unauthenticated("malformed Basic credentials", reason="INVALID_CLIENT") from None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    body = await read_body(request, config.max_body_bytes)
    if request.headers.get("content-type", "").startswith("application/json"):
        data = parse_json(body, config.max_json_depth)
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
