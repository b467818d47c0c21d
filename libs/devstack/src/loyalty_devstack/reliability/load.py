"""A steady load through the gateway's HTTP API, as tills and apps send it: purchases (the
composite `POST /v1/purchases:record` at the mall), checkouts paid with points
(`POST /v1/checkouts:redeem` at the cinema) and redemptions (`POST
/v1/members/{id}/points:redeem` at the hotel), each unit an API client of its own.

Every request is sent again with the same request_id after an answer that says "try again"
(503, 504, 429, 409), a connection refused or reset, or no answer within the client's timeout,
until it gets an answer; every attempt is recorded (`outcomes`).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from loyalty_devstack.reliability.outcomes import (
    CHECKOUT,
    CONNECTION,
    KINDS,
    OK,
    PURCHASE,
    REDEEM,
    REFUSED,
    TIMEOUT,
    Attempt,
    Request,
)

# Units of the load and what their clients may do.
CLIENTS = {PURCHASE: ("mall", "earn"), CHECKOUT: ("cinema", "redeem"), REDEEM: ("hotel", "redeem")}
WEIGHTS = (0.5, 0.25, 0.25)  # of KINDS
RETRY_PAUSE_SECONDS = 0.2
GIVE_UP_SECONDS = 180.0  # a request still unanswered after this is reported as such


@dataclass(frozen=True)
class Member:
    member_id: str
    phone: str


@dataclass
class Client:
    """An API client: its credentials and its current bearer token."""

    client_id: str
    secret: str
    token: str = ""


@dataclass
class Load:
    url: str
    clients: dict[str, Client]
    members: Sequence[Member]
    concurrency: int
    client_timeout: float
    seed: int = 0
    requests: list[Request] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        return time.monotonic() - self.started

    async def run(self) -> None:
        """Until `stopping` is set; then every request started is finished (answered or given
        up) before it returns."""
        self.started = time.monotonic()
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        async with httpx.AsyncClient(
            base_url=self.url, timeout=self.client_timeout, limits=limits
        ) as http:
            await asyncio.gather(
                *(self._worker(http, random.Random(self.seed + i)) for i in range(self.concurrency))
            )

    async def _worker(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        while not self.stopping.is_set():
            kind = rng.choices(KINDS, WEIGHTS)[0]
            member = rng.choice(self.members)
            request = Request(kind, uuid.uuid4().hex, f"{kind}-{uuid.uuid4().hex[:12]}", "")
            request.member_id = member.member_id
            self.requests.append(request)
            await self._until_answered(http, request, self._body(kind, member, request, rng))

    def _body(
        self, kind: str, member: Member, request: Request, rng: random.Random
    ) -> tuple[str, dict[str, object]]:
        unit = CLIENTS[kind][0]
        if kind == PURCHASE:
            amount = f"{rng.randint(10, 800)}.{rng.randint(0, 99):02d}"
            return "/v1/purchases:record", {
                "identity": {"type": "phone", "value": member.phone},
                "unit": unit,
                "orderId": request.order_id,
                "channel": "CHANNEL_POS",
                "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": amount}}],
                "requestId": request.request_id,
            }
        if kind == CHECKOUT:
            return "/v1/checkouts:redeem", {
                "identity": {"type": "phone", "value": member.phone},
                "unit": unit,
                "orderId": request.order_id,
                "points": str(rng.randint(10, 60)),
                "channel": "CHANNEL_APP",
                "requestId": request.request_id,
            }
        return f"/v1/members/{member.member_id}/points:redeem", {
            "unit": unit,
            "points": str(rng.randint(10, 60)),
            "orderId": request.order_id,
            "channel": "CHANNEL_APP",
            "requestId": request.request_id,
        }

    async def _until_answered(
        self, http: httpx.AsyncClient, request: Request, call: tuple[str, dict[str, object]]
    ) -> None:
        path, body = call
        client = self.clients[request.kind]
        began = self.now()
        while self.now() - began < GIVE_UP_SECONDS:
            attempt = await self._attempt(http, client, path, body)
            request.attempts.append(attempt)
            if attempt.ok:
                request.answer = OK
                return
            if not attempt.retried and not attempt.bad:
                request.answer = REFUSED
                return
            await asyncio.sleep(RETRY_PAUSE_SECONDS)

    async def _attempt(
        self, http: httpx.AsyncClient, client: Client, path: str, body: dict[str, object]
    ) -> Attempt:
        started = self.now()
        try:
            if not client.token:
                client.token = await token(http, client)
            response = await http.post(
                path, json=body, headers={"Authorization": f"Bearer {client.token}"}
            )
            if response.status_code == 401:  # expired: a new token, and the attempt again
                client.token = await token(http, client)
                response = await http.post(
                    path, json=body, headers={"Authorization": f"Bearer {client.token}"}
                )
        except httpx.TimeoutException:
            return Attempt(started, self.now(), TIMEOUT)
        except httpx.TransportError:
            return Attempt(started, self.now(), CONNECTION)
        except TokenRefused as refused:
            return Attempt(started, self.now(), str(refused.status_code), reason="NO_TOKEN")
        status, reason = error_of(response)
        return Attempt(started, self.now(), str(response.status_code), status, reason)


class TokenRefused(Exception):
    """`POST /v1/token` did not give a token (the gateway or its database is down)."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"POST /v1/token answered {status_code}")
        self.status_code = status_code


async def token(http: httpx.AsyncClient, client: Client) -> str:
    response = await http.post(
        "/v1/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.secret,
        },
    )
    if response.status_code != 200:
        raise TokenRefused(response.status_code)
    found: str = response.json()["access_token"]
    return found


def error_of(response: httpx.Response) -> tuple[str, str]:
    """(google.rpc code name, ErrorInfo reason) of an error answer; ("", "") otherwise."""
    if response.status_code < 400:
        return "", ""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return "", ""
    reasons = [
        d.get("reason", "")
        for d in error.get("details", [])
        if str(d.get("@type", "")).endswith("ErrorInfo")
    ]
    return str(error.get("status", "")), reasons[0] if reasons else ""
