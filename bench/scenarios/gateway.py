"""The gateway over HTTP: record a purchase and the member overview against an HTTP echo.

`raw-http-echo` is the ceiling: uvicorn + Starlette configured as the gateway's `http_job`
configures them (its `Server`, log level warning, no access log, lifespan on) serving one
route that answers a JSON body with itself. Every scenario here calls with `httpx.AsyncClient`
(one client and keep-alive connection per request in flight: see `Clients`) with --concurrency
requests in flight; client and servers share the process and its event loop, as in every
other scenario.

The gateway scenarios run identity, points, tiers, benefits and the gateway in-process
(start_service, migrations on, relays and consumers running, service defaults) in their own
databases and event namespace (`<run>_gw_*`, `<run>_gw`), wired like tests/gateway. The first
of them prepares what both use (kept in `ctx.shared`; each scenario starts and stops its own
services on those databases): the Huayue programme, ladder and benefits catalogue (the demo
loaders), an API client of the mall (scopes earn and redeem, a rate limit the limiter never
reaches), `MEMBERS` members registered at the mall's POS by phone with RegisterMember over
gRPC (untimed: about 65-80 a second here, so 2,000 rather than a bulk load) and their points
accounts COPYed in (as points-earn does), so no earn or balance read is a member's first touch
(that would add a GetMember from points to identity). Each scenario gets a token at
POST /v1/token and checks every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import grpc
import httpx
import uvicorn
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty_benefits.app import SPEC as BENEFITS
from loyalty_devstack.demo import load_programme
from loyalty_devstack.embedded import free_port
from loyalty_gateway.adapters.clients import ClientStore
from loyalty_gateway.app import SPEC as GATEWAY
from loyalty_gateway.http.server import Server
from loyalty_identity.app import SPEC as IDENTITY
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import RunningService, start_service
from loyalty_kit.settings import Settings
from loyalty_points.app import SPEC as POINTS
from loyalty_tiers.app import SPEC as TIERS
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.context import BenchContext
from bench.counters import HEALTH_STATEMENT, DriverCounter, RpcCounter
from bench.load import Op, closed_loop, percentile
from bench.registry import Measurement, scenario
from bench.scenarios.points import seed_accounts

MEMBERS = 2_000
REGISTER_CONCURRENCY = 16
RATE_PER_SECOND = 100_000  # the most a client may have: the limiter never refuses
HTTP_TIMEOUT = 30.0
UNLOADED_SECONDS = 1.0  # one request at a time, for the latency without queueing (extra)
COUNTED_REQUESTS = 100  # sequential requests after the measurement: calls to the services
SHARED_KEY = "gateway-suite"
CLIENT = "an httpx.AsyncClient per request in flight (one connection each)"
# Environment the in-process services need (as loyalty_devstack.testing sets it): identity's
# development keys and the token key pair, both in the data folder.
DEV_KEYS = ("LOYALTY_IDENTITY_DEV_KEYS", "LOYALTY_AUTH_DEV_KEYS")
REGISTRAR = Caller(unit="mall", client_id="bench-registrar", scopes=frozenset({"earn"}))
# What a gateway database connection runs once, not per request.
SETUP = ("SELECT current_setting('jit')", "SELECT set_config('jit'", "WITH RECURSIVE typeinfo")


def _progress(text: str) -> None:
    print(f"bench: gateway: {text}", file=sys.stderr, flush=True)


def _http_client(base_url: str, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=HTTP_TIMEOUT,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    )


class Clients:
    """One `httpx.AsyncClient` (one keep-alive connection) per request in flight.

    Not one client with a pool of --concurrency connections: httpcore 1.0.9's pool rescans
    every connection for every queued request (`_assign_requests_to_connections`, O(N x M),
    encode/httpcore#1035, encode/httpx#3215), so at 64 in flight the client's bookkeeping, not
    the server, set the pace (an echo measured 28 requests/s with one shared pool, 225 with a
    client per worker). The same connections reach the server either way.
    """

    def __init__(self, base_url: str, count: int, token: str | None = None) -> None:
        self.all = [_http_client(base_url, token) for _ in range(count)]
        self.free = list(self.all)

    @contextlib.asynccontextmanager
    async def one(self) -> AsyncIterator[httpx.AsyncClient]:
        client = self.free.pop()  # as many clients as workers: never empty
        try:
            yield client
        finally:
            self.free.append(client)

    async def aclose(self) -> None:
        for client in self.all:
            await client.aclose()


@contextlib.contextmanager
def _without_sniffio_lookups() -> Iterator[None]:
    """httpcore 1.0.9 runs `import sniffio` several times per request (current_async_library);
    sniffio is not installed here, and a failed import is not cached, so each one searched
    sys.path (about 1 ms of client CPU per request on the 2-core machine). While measuring, a
    None in sys.modules makes that import fail at once (the same ImportError, the same
    fallback to asyncio); servers are unaffected (anyio imports sniffio once, at load)."""
    if "sniffio" in sys.modules or importlib.util.find_spec("sniffio") is not None:
        yield
        return
    sys.modules["sniffio"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.modules.pop("sniffio", None)


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 3) if values else None


class PoolWatch:
    """The most connections checked out of an engine's pool, sampled while the load runs."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.pool: Any = engine.sync_engine.pool
        self.most = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.most = max(self.most, self.pool.checkedout())
            await asyncio.sleep(0.005)

    def __enter__(self) -> PoolWatch:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    @property
    def limit(self) -> int:
        return int(self.pool.size() + self.pool._max_overflow)


async def _drive(
    ctx: BenchContext, once: Op, engine: AsyncEngine | None = None, unit: str = "requests"
) -> Measurement:
    """Unloaded latency (one at a time, 1 s), then the closed loop at --concurrency (with the
    most connections `engine`'s pool lent at once)."""
    load_average = os.getloadavg()[0]
    with _without_sniffio_lookups():
        unloaded = await closed_loop(
            once, concurrency=1, seconds=UNLOADED_SECONDS, warmup=0.2, unit=unit
        )
        wall, cpu = time.perf_counter(), time.process_time()
        if engine is None:
            measured = await ctx.closed_loop(once, unit=unit)
        else:
            with PoolWatch(engine) as watch:
                measured = await ctx.closed_loop(once, unit=unit)
            measured.extra.update(
                gateway_pool_most_checked_out=watch.most, gateway_pool_limit=watch.limit
            )
        cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    latencies = unloaded.latencies_ms or []
    measured.extra.update(
        process_cpu_share=round(cpu_share, 2),
        cpu_ms_per_request=round(cpu_share * measured.seconds * 1000 / max(1, measured.count), 2),
        unloaded_p50_ms=_ms(latencies, 50),
        unloaded_p99_ms=_ms(latencies, 99),
        load_average_1m=round(load_average, 2),
    )
    return measured


# --- the ceiling: uvicorn + Starlette, a JSON echo ---------------------------------------------
# A body shaped like a purchase's, so both sides move as much JSON as the gateway's callers.
ECHO_BODY: dict[str, Any] = {
    "identity": {"type": "phone", "value": "13912345678"},
    "unit": "mall",
    "orderId": "bench-0123456789abcdef0123456789abcdef",
    "channel": "CHANNEL_POS",
    "requestId": "0123456789abcdef0123456789abcdef",
    "lines": [
        {"lineId": "1", "amount": {"currencyCode": "CNY", "amount": "123.45"}},
        {"lineId": "2", "amount": {"currencyCode": "CNY", "amount": "67.80"}},
    ],
}


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())


def _http_protocol() -> str:
    """What uvicorn's http="auto" picks: httptools if installed, else h11 (pure Python)."""
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


@contextlib.asynccontextmanager
async def _uvicorn(app: Starlette, port: int) -> AsyncIterator[None]:
    """`app` served as the gateway's http_job serves its own (uvicorn.Config as there)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            if task.done():
                task.result()  # raises what stopped it
            raise RuntimeError("uvicorn did not start")
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


@scenario("raw-http-echo")
async def raw_http_echo(ctx: BenchContext) -> Measurement:
    """Ceiling: uvicorn + Starlette as the gateway configures them, a POST route echoing JSON.

    No routing table from the contracts, no auth, no services: the HTTP server stack alone,
    called by the same httpx client as the gateway scenarios with a purchase-sized body.
    """
    port = free_port()
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"])])
    async with _uvicorn(app, port):
        clients = Clients(f"http://127.0.0.1:{port}", ctx.concurrency)
        try:

            async def once() -> None:
                async with clients.one() as http:
                    response = await http.post("/echo", json=ECHO_BODY)
                if response.status_code != 200 or response.json() != ECHO_BODY:
                    raise AssertionError(f"echo answered {response.status_code}: {response.text}")

            measured = await _drive(ctx, once)
        finally:
            await clients.aclose()
    measured.extra.update(
        server=f"uvicorn {uvicorn.__version__}, http {_http_protocol()}, asyncio loop",
        client=CLIENT,
    )
    return measured


# --- the gateway in front of the four services ---------------------------------------------------
@dataclass
class Prepared:
    """What both gateway scenarios use, made once per run in the `<run>_gw_*` databases."""

    phones: list[str]
    members: list[str]  # `members/<id>`, in the order of `phones`
    client_id: str
    secret: str
    register_seconds: float


@dataclass
class Suite:
    settings: Settings
    services: dict[str, RunningService]
    url: str  # the gateway's HTTP side

    @property
    def gateway(self) -> RunningService:
        return self.services["gateway"]


def _settings(ctx: BenchContext) -> Settings:
    return ctx.settings(
        database_prefix=f"{ctx.run_id}_gw_",
        event_namespace=f"{ctx.run_id}_gw",
        data_dir=ctx.infra.data_dir / "gateway-data",
    )


@contextlib.asynccontextmanager
async def _suite(ctx: BenchContext) -> AsyncIterator[Suite]:
    """identity, points, tiers, benefits and the gateway (HTTP up, every backend serving)."""
    for name in DEV_KEYS:
        os.environ.setdefault(name, "true")
    settings = _settings(ctx)
    running: dict[str, RunningService] = {}

    async def start(name: str, spec: Any, **targets: str) -> RunningService:
        service = await start_service(spec, settings.model_copy(update=targets), port=0)
        running[name] = service
        await service.wait_until_serving()
        return service

    try:
        identity = await start("identity", IDENTITY)
        points = await start("points", POINTS, identity_target=identity.target)
        tiers = await start("tiers", TIERS)
        benefits = await start("benefits", BENEFITS, points_target=points.target)
        targets = {
            "identity_target": identity.target,
            "points_target": points.target,
            "tiers_target": tiers.target,
            "benefits_target": benefits.target,
        }
        await start("gateway", GATEWAY, **targets)
        suite = Suite(
            settings.model_copy(update=targets),
            running,
            f"http://127.0.0.1:{settings.gateway_http_port}",
        )
        async with _http_client(suite.url) as http:
            for _ in range(200):  # uvicorn starts beside the gRPC server
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the gateway's /healthz never answered 200")
        yield suite
    finally:
        for service in reversed(running.values()):
            await service.stop(grace=0.5)


def _phone(i: int) -> str:
    return f"139{10_000_000 + i:08d}"


async def _register(target: str, count: int) -> list[str]:
    """`count` members registered at the mall's POS by phone; their resource names."""
    names = [""] * count
    metadata = REGISTRAR.metadata()
    queue = iter(range(count))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)

        async def worker() -> None:
            for i in queue:
                request = identity_pb.RegisterMemberRequest(
                    request_id=f"bench-register-{i}",
                    unit="mall",
                    channel=channel_pb2.CHANNEL_POS,
                    identities=[member_pb2.Identity(type="phone", value=_phone(i))],
                )
                reply = await stub.RegisterMember(request, metadata=metadata, timeout=HTTP_TIMEOUT)
                names[i] = reply.member.name

        async with asyncio.TaskGroup() as group:
            for _ in range(REGISTER_CONCURRENCY):
                group.create_task(worker())
    return names


async def _prepared(ctx: BenchContext, suite: Suite) -> Prepared:
    """The rules, the API client and the members: made by the first scenario, then shared."""
    found = ctx.shared.get(SHARED_KEY)
    if isinstance(found, Prepared):
        return found
    for loaded in await load_programme(suite.settings, journeys=False):  # no engagement here
        _progress(loaded.what)
    async with suite.gateway.context.uow() as uow:
        client, secret = await ClientStore(uow.session).create(
            "mall", ["earn", "redeem"], description="bench", rate=RATE_PER_SECOND
        )
        await uow.commit()
    _progress(f"registering {MEMBERS:,} members (RegisterMember over gRPC) ...")
    started = time.perf_counter()
    members = await _register(suite.services["identity"].target, MEMBERS)
    took = time.perf_counter() - started
    _progress(f"registered in {took:.1f}s ({MEMBERS / took:,.0f}/s)")
    url = suite.settings.service_database_url(POINTS.name)
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        await seed_accounts(conn, [m.removeprefix("members/") for m in members])
    finally:
        await conn.close()
    prepared = Prepared(
        [_phone(i) for i in range(MEMBERS)], members, client.client_id, secret, took
    )
    ctx.shared[SHARED_KEY] = prepared
    return prepared


async def _token(suite: Suite, prepared: Prepared) -> str:
    async with _http_client(suite.url) as http:
        response = await http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": prepared.client_id,
                "client_secret": prepared.secret,
            },
        )
    if response.status_code != 200:
        raise AssertionError(f"POST /v1/token answered {response.status_code}: {response.text}")
    token: str = response.json()["access_token"]
    return token


async def _counted(suite: Suite, once: Op) -> dict[str, Any]:
    """`COUNTED_REQUESTS` requests one at a time: the services' calls per request (their
    access log: method and server-side ms) and the gateway's own SQL per request."""
    engine = suite.gateway.context.engine
    assert engine is not None
    rpcs = RpcCounter()
    sql = DriverCounter(engine)
    try:
        for _ in range(COUNTED_REQUESTS):
            await once()
        await asyncio.sleep(0.05)  # the query logger reports on the next loop turns
    finally:
        rpcs.remove()
        sql.remove()
    n = COUNTED_REQUESTS
    return {
        "grpc_calls_per_request": round(rpcs.total / n, 2),
        "grpc_calls": {m: round(c / n, 2) for m, c in sorted(rpcs.calls.items())},
        "grpc_server_p50_ms": {m: _ms(v, 50) for m, v in sorted(rpcs.ms.items())},
        "gateway_statements_per_request": round(
            sql.count(excluding=(HEALTH_STATEMENT, *SETUP)) / n, 2
        ),
        "gateway_statements": sql.top(8, excluding=(HEALTH_STATEMENT, *SETUP)),
    }


Checked = Callable[[], int]  # how many answers were checked so far


async def _run(
    ctx: BenchContext, make: Callable[[Clients, Prepared], tuple[Op, Checked]]
) -> Measurement:
    """Start the suite, prepare (first time), get a token, measure `make`'s request, count."""
    async with _suite(ctx) as suite:
        prepared = await _prepared(ctx, suite)
        token = await _token(suite, prepared)
        clients = Clients(suite.url, ctx.concurrency, token)
        try:
            once, checked = make(clients, prepared)
            measured = await _drive(ctx, once, suite.gateway.context.engine)
            measured.extra.update(await _counted(suite, once))
        finally:
            await clients.aclose()
        measured.extra.update(
            client=CLIENT,
            members=MEMBERS,
            register_members_per_s=round(MEMBERS / prepared.register_seconds, 1),
            answers_checked=checked(),
        )
        return measured


def _expected(response: httpx.Response, what: str) -> Any:
    if response.status_code != 200:
        raise AssertionError(f"{what} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def _purchaser(clients: Clients, prepared: Prepared) -> tuple[Op, Checked]:
    """POST /v1/purchases:record for a random member by phone, 1-3 CNY lines at the mall."""
    rng = random.Random()
    checked = 0

    async def once() -> None:
        nonlocal checked
        i = rng.randrange(len(prepared.phones))
        lines, spend = [], Decimal(0)
        for n in range(rng.randint(1, 3)):
            cents = rng.randrange(1_000, 50_001)  # CNY 10.00 - 500.00: members stay basic
            amount = Decimal(cents) / 100
            spend += amount
            lines.append(
                {"lineId": str(n + 1), "amount": {"currencyCode": "CNY", "amount": str(amount)}}
            )
        body = {
            "identity": {"type": "phone", "value": prepared.phones[i]},
            "unit": "mall",
            "orderId": f"bench-{uuid.uuid4().hex}",
            "channel": "CHANNEL_POS",
            "requestId": uuid.uuid4().hex,
            "lines": lines,
        }
        async with clients.one() as http:
            response = await http.post("/v1/purchases:record", json=body)
        answer = _expected(response, "record purchase")
        points = int(answer["posting"]["points"])
        # Mall x1, base 1 point per CNY: the whole CNY, or more for a member already upgraded.
        if answer["member"] != prepared.members[i] or not (
            points == int(spend) or (points > int(spend) and answer["tier"] != "basic")
        ):
            raise AssertionError(f"{spend} CNY for {prepared.members[i]}: {answer}")
        if int(answer["balance"]["available"]) < points or answer["unavailable"]:
            raise AssertionError(f"balance or parts missing: {answer}")
        checked += 1

    return once, lambda: checked


def _overview(clients: Clients, prepared: Prepared) -> tuple[Op, Checked]:
    """GET /v1/members/<id>/overview for a random member."""
    rng = random.Random()
    checked = 0

    async def once() -> None:
        nonlocal checked
        member = prepared.members[rng.randrange(len(prepared.members))]
        async with clients.one() as http:
            response = await http.get(f"/v1/{member}/overview")
        answer = _expected(response, "member overview")
        if answer["member"]["name"] != member or answer["unavailable"] or "balance" not in answer:
            raise AssertionError(f"overview of {member}: {answer}")
        checked += 1

    return once, lambda: checked


@scenario("gateway-record-purchase", ceiling="raw-http-echo")
async def gateway_record_purchase(ctx: BenchContext) -> Measurement:
    """POST /v1/purchases:record through the gateway: resolve by phone, earn, 3 parallel reads.

    A mall API client's bearer token; a random one of the registered members by phone, fresh
    order and request ids, 1-3 lines of CNY 10.00-500.00; every answer checked (200, the member,
    points = the whole CNY at the mall for a basic member, the balance, no part unavailable).
    `extra`: unloaded latency, load average, the process's CPU per request, the most gateway
    database connections in use at once (the idempotency transaction spans the whole flow), and
    over 100 sequential requests afterwards the gRPC calls the services served per request (by
    method, with their server-side p50) and the gateway's own SQL per request.
    """
    return await _run(ctx, _purchaser)


@scenario("gateway-member-overview", ceiling="raw-http-echo")
async def gateway_member_overview(ctx: BenchContext) -> Measurement:
    """GET /v1/{member}/overview through the gateway: 5 parallel reads of the four services.

    Same suite, client and members as gateway-record-purchase (prepared once per run); a random
    member per request, every answer checked (200, the member, nothing unavailable). `extra` as
    there.
    """
    return await _run(ctx, _overview)
