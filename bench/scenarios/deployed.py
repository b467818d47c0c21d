"""The suite as deployed (`python -m bench --deployed`): every service its own process, the load
from another process, and CPU seconds per operation of every server process.

The first deployed scenario of a run starts the suite as `loyalty-dev run` does
(`loyalty_devstack.cli.spawn_service`: the seven services, each `python -m loyalty_<name>`, on
ports of their own, the run's PostgreSQL and NATS, databases `<run>_dep_*`, namespace
`<run>dep`, the development suite's environment: console logs, pools of 5), loads the demo
(the Huayue programme and its 4 members), registers `--members` members (default 1,000) by
phone with RegisterMember, opens their points accounts (COPY, as the gateway scenarios do) and
makes a mall API client with the gateway's CLI. The suite is stopped at the end of the run.

Each scenario then drives one thing from a load process of its own (`wrk` with
`bench/wrk/purchase.lua` for HTTP, `python -m bench.deployed_load` for gRPC: `--concurrency`
calls in flight over several connections), `--warmup` seconds unmeasured, then `--seconds`
measured, and reads the CPU time of every server process from /proc (`bench.proc`) as the
measured phase starts and ends: each service (with any process it starts), PostgreSQL (the
postmaster and its backends), NATS. `extra.server_cpu_ms_per_op` has each one's milliseconds
per operation and their total; the load process's and this runner's (which relays the
services' logs, as `loyalty-dev run` does) are apart. Each has a raw ceiling run just before it
the same way (`bench/deployed_raw.py`), so the throughput ratio and `cpu_ratio` (server CPU per
operation over the ceiling's) compare like with like.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg
import grpc
import httpx
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty_devstack import cli
from loyalty_devstack.demo import load as load_demo
from loyalty_devstack.demo_history import NO_HISTORY
from loyalty_devstack.embedded import free_port
from loyalty_gateway.app import SPEC as GATEWAY
from loyalty_kit.auth import development_keys
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.migrations import upgrade_database
from loyalty_kit.settings import Settings

from bench import proc
from bench.context import BenchContext
from bench.members import Population
from bench.registry import Measurement, scenario
from bench.scenarios.points import _raw_database, seed_accounts

DEFAULT_MEMBERS = 1_000
REGISTER_CONCURRENCY = 16
CONNECTIONS = 4  # gRPC load: TCP connections the calls in flight are spread over
WRK_THREADS = 2  # the machine's cores
RAW_POOL = 10  # connections of each raw process's asyncpg pool (the suite's pools: 5 + 5)
SHARED_KEY = "deployed-suite"
RAW_POINTS_KEY = "deployed-raw-points"
REGISTRAR = Caller(unit="mall", client_id="bench-registrar", scopes=frozenset({"earn"}))
LUA = Path(__file__).resolve().parent.parent / "wrk" / "purchase.lua"
READY_SECONDS = 60.0
# Quiet: the server processes together below this share of a core over QUIET_WINDOW seconds
# (an idle suite uses a few percent: relays' polls, health checks)
QUIET_SHARE = 0.15
QUIET_WINDOW = 1.0
QUIET_DEADLINE = 90.0
NOT_SERVERS = ("runner", "load")
RESULT_LINE_LIMIT = 256 * 1024 * 1024


def _progress(text: str) -> None:
    print(f"bench: deployed: {text}", file=sys.stderr, flush=True)


def _url(settings: Settings, service: str) -> str:
    return settings.service_database_url(service).render_as_string(hide_password=False)


@dataclass
class Suite:
    settings: Settings
    env: dict[str, str]
    services: dict[str, cli.ServiceProcess]
    population: Population  # its identity keys (the members are registered, not its own)
    workers: dict[str, int] = field(default_factory=dict)  # worker processes of each service
    http: str = ""
    phones: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # `members/<id>`, as `phones`
    token: str = ""

    def target(self, name: str) -> str:
        return f"127.0.0.1:{cli.service_ports(self.settings)[name]}"


def workers_of(environ: dict[str, str]) -> dict[str, int]:
    """Worker processes of each service (`LOYALTY_WORKERS`): every service's from
    `LOYALTY_WORKERS` (default 1), and the services `BENCH_WORKERS` names (`identity=2,gateway=2`)
    their own."""
    every = int(environ.get("LOYALTY_WORKERS", "1"))
    workers = dict.fromkeys(cli.SERVICES, every)
    for item in filter(
        None, (part.strip() for part in environ.get("BENCH_WORKERS", "").split(","))
    ):
        name, _, count = item.partition("=")
        if name not in workers or not count.isdigit() or int(count) < 1:
            raise ValueError(f"BENCH_WORKERS: {item!r} is not <service>=<workers>")
        workers[name] = int(count)
    return workers


def member_count(ctx: BenchContext) -> int:
    return ctx.members if ctx.members is not None else DEFAULT_MEMBERS


def phone(i: int, salt: int) -> str:
    """A mobile number of the run: 158 and 8 digits (never a demo member's 138/139); distinct
    for i below 10**8 (7,919 is prime to it)."""
    number = (salt + i * 7_919) % 10**8
    return f"158{number:08d}"


def infrastructure_groups(ctx: BenchContext) -> list[proc.Group]:
    """PostgreSQL (postmaster and backends) and NATS, embedded or the machine's, when found."""
    groups = []
    postgres = nats = None
    if ctx.infra.postgres is not None:
        postgres = proc.pid_file(ctx.infra.postgres.data_dir / "postmaster.pid")
    else:
        port = re.search(r":(\d+)/", ctx.infra.database_url)
        postgres = proc.listener(int(port.group(1)) if port else 5432)
    if ctx.infra.nats is not None:
        nats = proc.pid_file(ctx.infra.nats.pid_file)
    else:
        port = re.search(r":(\d+)", ctx.infra.nats_url.split("//")[-1])
        nats = proc.listener(int(port.group(1)) if port else 4222)
    if postgres:
        groups.append(proc.Group("postgres", (postgres,)))
    if nats:
        groups.append(proc.Group("nats", (nats,)))
    return groups


def _shared_servers(ctx: BenchContext) -> dict[str, Any]:
    """Whether PostgreSQL and NATS are the machine's (other work's CPU counts with ours)."""
    return {
        "postgres": "embedded" if ctx.infra.postgres is not None else "machine (shared)",
        "nats": "embedded" if ctx.infra.nats is not None else "machine (shared)",
    }


async def _register(target: str, phones: list[str]) -> list[str]:
    names = [""] * len(phones)
    queue = iter(range(len(phones)))
    metadata = REGISTRAR.metadata()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)

        async def worker() -> None:
            for i in queue:
                reply = await stub.RegisterMember(
                    identity_pb.RegisterMemberRequest(
                        request_id=uuid.uuid4().hex,
                        unit="mall",
                        channel=channel_pb2.CHANNEL_POS,
                        identities=[member_pb2.Identity(type="phone", value=phones[i])],
                    ),
                    metadata=metadata,
                    timeout=30.0,
                )
                names[i] = reply.member.name

        async with asyncio.TaskGroup() as group:
            for _ in range(REGISTER_CONCURRENCY):
                group.create_task(worker())
    return names


async def _token(suite: Suite) -> str:
    made = await cli.create_api_client(
        suite.env, "mall", "earn redeem", "bench deployed", rate=100_000
    )
    if made is None:
        raise RuntimeError("the gateway's CLI could not make an API client")
    async with httpx.AsyncClient(base_url=suite.http, timeout=30.0) as http:
        response = await http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": made["client_id"],
                "client_secret": made["client_secret"],
            },
        )
    if response.status_code != 200:
        raise RuntimeError(f"POST /v1/token answered {response.status_code}: {response.text}")
    token: str = response.json()["access_token"]
    return token


async def _stop(services: dict[str, cli.ServiceProcess], log: TextIO) -> None:
    processes = {n: s.process for n, s in services.items()}
    await cli.terminate([p for n, p in processes.items() if n == "gateway"])
    await cli.terminate([p for n, p in processes.items() if n != "gateway"])
    for service in services.values():
        if service.pipe is not None:
            service.pipe.cancel()
    log.close()


async def start_suite(ctx: BenchContext) -> Suite:
    """The suite of processes, the demo, the members, a token: once per run."""
    found = ctx.shared.get(SHARED_KEY)
    if isinstance(found, Suite):
        return found
    if isinstance(found, Exception):  # one start a run: the later scenarios fail the same way
        raise RuntimeError(f"the suite did not start: {found}")
    try:
        suite = await _start_suite(ctx)
    except Exception as error:
        while isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]  # type: ignore[assignment]
        ctx.shared[SHARED_KEY] = error
        raise error from None
    ctx.shared[SHARED_KEY] = suite
    return suite


async def _start_suite(ctx: BenchContext) -> Suite:
    data_dir = ctx.infra.data_dir / "deployed"
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in cli.SERVICES}
    http_port = free_port()
    population = Population.new(1)
    env = {
        **cli.suite_env(data_dir),
        **population.env(),
        "LOYALTY_DATABASE_URL": ctx.infra.database_url,
        "LOYALTY_NATS_URL": ctx.infra.nats_url,
        "LOYALTY_DATABASE_PREFIX": f"{ctx.run_id}_dep_",
        "LOYALTY_EVENT_NAMESPACE": f"{ctx.run_id}dep",
        "LOYALTY_HOST": "127.0.0.1",
        "LOYALTY_METRICS_PORT": "0",
        "LOYALTY_GATEWAY_GRPC_PORT": str(ports["gateway"]),
        "LOYALTY_GATEWAY_HTTP_PORT": str(http_port),
        **{f"LOYALTY_{n.upper()}_PORT": str(p) for n, p in ports.items() if n != "gateway"},
    }
    values: dict[str, Any] = {
        "database_url": ctx.infra.database_url,
        "nats_url": ctx.infra.nats_url,
        "database_prefix": f"{ctx.run_id}_dep_",
        "event_namespace": f"{ctx.run_id}dep",
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "gateway_http_port": http_port,
        "gateway_grpc_port": ports["gateway"],
        **{f"{n}_port": p for n, p in ports.items() if n != "gateway"},
    }
    settings = Settings(**values)
    development_keys(data_dir)  # the token keys, made once before the services read them
    log_path = ctx.infra.data_dir / "deployed-suite.log"
    log = log_path.open("w", encoding="utf-8")
    services: dict[str, cli.ServiceProcess] = {}
    ctx.closers.append(lambda: _stop(services, log))  # also when the start fails
    workers = workers_of(env)
    named = ", ".join(f"{n} ({workers[n]} workers)" if workers[n] > 1 else n for n in cli.SERVICES)
    _progress(f"starting {named} (their output: {log_path})")
    for name in cli.SERVICES:
        own = {**env, "LOYALTY_WORKERS": str(workers[name])}
        services[name] = await cli.spawn_service(name, own, log)
    await cli.wait_started(services, cli.service_ports(settings), asyncio.Event())
    suite = Suite(
        settings, env, services, population, workers, http=f"http://127.0.0.1:{http_port}"
    )
    _progress(await load_demo(settings, NO_HISTORY))
    count = member_count(ctx)
    salt = uuid.uuid4().int % 10**9
    suite.phones = [phone(i, salt) for i in range(count)]
    started = time.perf_counter()
    suite.members = await _register(suite.target("identity"), suite.phones)
    took = time.perf_counter() - started
    _progress(f"registered {count:,} members in {took:.1f}s")
    conn = await asyncpg.connect(**asyncpg_params(settings.service_database_url("points")))
    try:
        await seed_accounts(conn, [m.removeprefix("members/") for m in suite.members])
    finally:
        await conn.close()
    suite.token = await _token(suite)
    return suite


# --- measuring ---------------------------------------------------------------------------------
async def settle(groups: list[proc.Group]) -> tuple[float, bool]:
    """Wait until the server groups are quiet (what consumes events has caught up): seconds
    waited, and whether they were quiet by the deadline."""
    servers = [g for g in groups if g.name not in NOT_SERVERS]
    clock = time.perf_counter
    started = clock()
    previous, at = sum(proc.snapshot(servers).values()), clock()
    while clock() - started < QUIET_DEADLINE:
        await asyncio.sleep(QUIET_WINDOW)
        now, when = sum(proc.snapshot(servers).values()), clock()
        if now - previous < QUIET_SHARE * (when - at):
            return clock() - started, True
        previous, at = now, when
    return clock() - started, False


@dataclass
class Measured:
    count: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    errors: dict[str, int]
    before: dict[str, float]
    after: dict[str, float]
    latencies_ms: list[float] | None = None
    load_cpu_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    drained: dict[str, float] = field(default_factory=dict)  # once quiet again after `after`
    settled_s: float = 0.0  # waited before: the previous scenario's backlog
    drain_s: float = 0.0
    quiet: bool = True


async def _drain(measured: Measured, groups: list[proc.Group]) -> Measured:
    """The server CPU until the servers are quiet again after the measurement (asynchronous
    work the operations caused, done after the window: events consumed late)."""
    servers = [g for g in groups if g.name not in NOT_SERVERS]
    measured.drain_s, quiet = await settle(servers)
    measured.quiet = measured.quiet and quiet
    measured.drained = proc.snapshot(servers)
    return measured


async def _grpc_load(
    ctx: BenchContext, groups: list[proc.Group], config: dict[str, Any]
) -> Measured:
    """`bench.deployed_load` in its own process; the groups' CPU read at its two marks."""
    settled, quiet = await settle(groups)
    config = {
        "connections": min(CONNECTIONS, ctx.concurrency),
        "concurrency": ctx.concurrency,
        "seconds": ctx.seconds,
        "warmup": ctx.warmup,
        **config,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.deployed_load",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=RESULT_LINE_LIMIT,  # the result line holds every call's latency
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(config).encode())
    await process.stdin.drain()
    process.stdin.close()
    groups = [*groups, proc.Group("load", (process.pid,))]
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    result: dict[str, Any] = {}
    while line := (await process.stdout.readline()).decode().strip():
        if line == "measuring":
            before = proc.snapshot(groups)
        elif line == "measured":
            after = proc.snapshot(groups)
        elif line.startswith("{"):
            result = json.loads(line)
    if await process.wait() != 0 or not result or not after:
        raise RuntimeError(f"the load process failed (exit code {process.returncode})")
    measured = Measured(
        count=result["count"],
        seconds=result["seconds"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        errors=result["errors"],
        before=before,
        after=after,
        latencies_ms=result["latencies_ms"],
        load_cpu_s=result["load_cpu_s"],
        detail={"load": f"grpc.aio, {config['connections']} connections"},
        settled_s=settled,
        quiet=quiet,
    )
    return await _drain(measured, groups)


async def _wrk(
    url: str, seconds: float, concurrency: int, args: list[str], script: Path = LUA
) -> dict[str, Any]:
    threads = min(WRK_THREADS, concurrency)
    process = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
        "--",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    found = [line for line in text.splitlines() if line.startswith("json ")]
    if process.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({process.returncode}): {text[-1000:]}")
    result: dict[str, Any] = json.loads(found[-1].removeprefix("json "))
    result["pid"] = process.pid
    return result


async def _http_load(
    ctx: BenchContext,
    groups: list[proc.Group],
    url: str,
    phones: list[str],
    token: str = "",
    script: Path = LUA,
) -> Measured:
    """wrk running `script` (posting purchases; its first argument a file of `phones`, one a
    line): a warm-up run, then the measured one with the CPU read around it."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    phones_file = ctx.infra.data_dir / f"phones-{uuid.uuid4().hex[:8]}.txt"
    phones_file.write_text("\n".join(phones) + "\n")
    args = [str(phones_file), uuid.uuid4().hex[:16], *([token] if token else [])]
    settled, quiet = await settle(groups)
    if ctx.warmup > 0:
        warm = [args[0], uuid.uuid4().hex[:16], *args[2:]]
        await _wrk(url, ctx.warmup, ctx.concurrency, warm, script)
    before = proc.snapshot(groups)
    # wrk's own CPU: the time of children waited for (only wrk ends meanwhile)
    children_before = os.times().children_user + os.times().children_system
    result = await _wrk(url, ctx.seconds, ctx.concurrency, args, script)
    after = proc.snapshot(groups)
    load_cpu = os.times().children_user + os.times().children_system - children_before
    kinds = ("connect", "read", "write", "status", "timeout", "partial")  # partial: some scripts'
    errors = {k: result[k] for k in kinds if result.get(k)}
    measured = Measured(
        count=result["requests"] - result["status"],
        seconds=result["duration_us"] / 1e6,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        errors=errors,
        before=before,
        after=after,
        load_cpu_s=load_cpu,
        detail={
            "load": f"wrk -t{min(WRK_THREADS, ctx.concurrency)} -c{ctx.concurrency}",
            "p90_ms": result["p90_us"] / 1000,
            "max_ms": result["max_us"] / 1000,
        },
        settled_s=settled,
        quiet=quiet,
    )
    return await _drain(measured, groups)


def _measurement(ctx: BenchContext, measured: Measured, unit: str, **extra: Any) -> Measurement:
    if measured.errors:
        raise AssertionError(f"{unit}: errors {measured.errors}")
    load_ms = None
    runner = measured.after.get("runner", 0.0) - measured.before.get("runner", 0.0)
    servers = {n: v for n, v in measured.after.items() if n not in NOT_SERVERS}
    cpu = proc.cpu_ms_per_op(measured.before, servers, measured.count)
    drained = proc.cpu_ms_per_op(measured.before, measured.drained, measured.count)
    if measured.load_cpu_s is not None and measured.count:
        load_ms = round(measured.load_cpu_s * 1000 / measured.count, 3)
    return Measurement(
        count=measured.count,
        seconds=measured.seconds,
        concurrency=ctx.concurrency,
        unit=unit,
        latencies_ms=measured.latencies_ms,
        p50_ms=measured.p50_ms,
        p99_ms=measured.p99_ms,
        extra={
            "server_cpu_ms_per_op": cpu,
            "load_cpu_ms_per_op": load_ms,
            "runner_cpu_ms_per_op": round(runner * 1000 / max(1, measured.count), 3),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "server_cpu_ms_per_op_drained": drained,
            "settled_s": round(measured.settled_s, 1),
            "drain_s": round(measured.drain_s, 1),
            "quiet": measured.quiet,
            "servers": _shared_servers(ctx),
            **measured.detail,
            **extra,
        },
    )


def _more_than_one(suite: Suite) -> dict[str, int]:
    """The services run with several worker processes (their CPU counts all of them)."""
    return {name: count for name, count in suite.workers.items() if count > 1}


def _suite_groups(ctx: BenchContext, suite: Suite) -> list[proc.Group]:
    return [
        *(proc.Group(n, (s.process.pid,)) for n, s in suite.services.items()),
        *infrastructure_groups(ctx),
        proc.Group("runner", (os.getpid(),), tree=False),
    ]


# --- the raw ceilings' processes ---------------------------------------------------------------
@asynccontextmanager
async def raw_processes(
    ctx: BenchContext, roles: list[tuple[str, str, dict[str, Any]]]
) -> AsyncIterator[tuple[dict[str, int], list[proc.Group]]]:
    """`(name, role, config)` of `bench.deployed_raw` started in order (a role's config may
    name earlier ones' targets); their ports, and CPU groups with PostgreSQL and NATS."""
    started: list[asyncio.subprocess.Process] = []
    ports: dict[str, int] = {}
    groups: list[proc.Group] = []
    try:
        for name, role, config in roles:
            if "targets" in config:
                config = {
                    **config,
                    "targets": {k: f"127.0.0.1:{ports[v]}" for k, v in config["targets"].items()},
                }
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.deployed_raw",
                role,
                json.dumps(config),
                stdout=asyncio.subprocess.PIPE,
            )
            started.append(process)
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), READY_SECONDS)
            if not line.startswith(b"ready "):
                raise RuntimeError(f"raw {role} did not start ({process.returncode})")
            ports[name] = int(line.split()[1])
            groups.append(proc.Group(name, (process.pid,)))
        yield (
            ports,
            [
                *groups,
                *infrastructure_groups(ctx),
                proc.Group("runner", (os.getpid(),), tree=False),
            ],
        )
    finally:
        await cli.terminate(list(reversed(started)))


async def _raw_points(ctx: BenchContext, suite: Suite) -> str:
    """`<run>_raw_points` (migrated, the programme, the suite's members' accounts), once."""
    found = ctx.shared.get(RAW_POINTS_KEY)
    if isinstance(found, str):
        return found
    url = await _raw_database(ctx, [m.removeprefix("members/") for m in suite.members])
    rendered = url.render_as_string(hide_password=False)
    ctx.shared[RAW_POINTS_KEY] = rendered
    return rendered


def _identity_role(suite: Suite) -> tuple[str, str, dict[str, Any]]:
    return (
        "raw-identity",
        "identity",
        {
            "database_url": _url(suite.settings, "identity"),
            "pool": RAW_POOL,
            "keys": suite.population.keys,
            "blind_index_key": suite.population.blind_index_key,
        },
    )


def _points_role(ctx: BenchContext, url: str) -> tuple[str, str, dict[str, Any]]:
    return (
        "raw-points",
        "points",
        {"database_url": url, "pool": RAW_POOL, "namespace": ctx.namespace},
    )


# --- scenarios ---------------------------------------------------------------------------------


@scenario("raw-deployed-resolve", explicit=True)
async def raw_deployed_resolve(ctx: BenchContext) -> Measurement:
    """Ceiling: bare grpc.aio + asyncpg ResolveMember in a process of its own, over the suite's
    identity database (blind index in Python, two SELECTs), loaded from another process."""
    suite = await start_suite(ctx)
    async with raw_processes(ctx, [_identity_role(suite)]) as (ports, groups):
        measured = await _grpc_load(
            ctx,
            groups,
            {
                "kind": "resolve",
                "target": f"127.0.0.1:{ports['raw-identity']}",
                "phones": suite.phones,
                "members": suite.members,
            },
        )
    return _measurement(ctx, measured, "calls", statements_per_call=2)


async def drive_service(
    ctx: BenchContext, suite: Suite, service: str, kind: str, unit: str, **config: Any
) -> Measurement:
    """The deployed `service` driven by the load process's calls of `kind` (random registered
    members, `config` added to the load's own), measured as every deployed scenario is."""
    measured = await _grpc_load(
        ctx,
        _suite_groups(ctx, suite),
        {"kind": kind, "target": suite.target(service), "members": suite.members, **config},
    )
    return _measurement(
        ctx, measured, unit, members=len(suite.members), workers=_more_than_one(suite)
    )


@scenario("deployed-resolve", ceiling="raw-deployed-resolve", explicit=True)
async def deployed_resolve(ctx: BenchContext) -> Measurement:
    """ResolveMember of the deployed identity service by phone, anonymous caller, from a load
    process (grpc.aio, several connections); every answer's member id checked."""
    suite = await start_suite(ctx)
    return await drive_service(ctx, suite, "identity", "resolve", "calls", phones=suite.phones)


@scenario("raw-deployed-earn", explicit=True)
async def raw_deployed_earn(ctx: BenchContext) -> Measurement:
    """Ceiling: bare grpc.aio + asyncpg EarnPoints (the service's 8 statements, one transaction)
    in a process of its own, on a database of its own with the same accounts."""
    suite = await start_suite(ctx)
    url = await _raw_points(ctx, suite)
    async with raw_processes(ctx, [_points_role(ctx, url)]) as (ports, groups):
        measured = await _grpc_load(
            ctx,
            groups,
            {
                "kind": "earn",
                "target": f"127.0.0.1:{ports['raw-points']}",
                "members": suite.members,
            },
        )
    return _measurement(ctx, measured, "earns", statements_per_call=8)


@scenario("deployed-earn", ceiling="raw-deployed-earn", explicit=True)
async def deployed_earn(ctx: BenchContext) -> Measurement:
    """EarnPoints of the deployed points service as a mall POS, a random member, a new order of
    1-3 CNY lines, from a load process; points checked. Its relay publishes each PointsEarned,
    which tiers, engagement and insights consume: their CPU counts too."""
    return await drive_service(ctx, await start_suite(ctx), "points", "earn", "earns")


@scenario("raw-deployed-record-purchase", explicit=True)
async def raw_deployed_record_purchase(ctx: BenchContext) -> Measurement:
    """Ceiling: the purchase composite's calls on bare processes: uvicorn with a bare ASGI
    callable (recall, then keep the answer: 2 statements) calling raw ResolveMember, then raw
    EarnPoints, then three reads at once (one SELECT each), each its own process; wrk as for
    the gateway."""
    suite = await start_suite(ctx)
    points_url = await _raw_points(ctx, suite)
    gateway_url = await ctx.database("raw_gateway")
    assert GATEWAY.migrations is not None
    await upgrade_database(gateway_url, GATEWAY.migrations)
    front_port = free_port()
    roles = [
        _identity_role(suite),
        _points_role(ctx, points_url),
        ("raw-reads", "reads", {"database_url": points_url, "pool": RAW_POOL}),
        (
            "raw-front",
            "front",
            {
                "database_url": gateway_url.render_as_string(hide_password=False),
                "pool": RAW_POOL,
                "port": front_port,
                "targets": {
                    "identity": "raw-identity",
                    "points": "raw-points",
                    "reads": "raw-reads",
                },
            },
        ),
    ]
    async with raw_processes(ctx, roles) as (_ports, groups):
        measured = await _http_load(ctx, groups, f"http://127.0.0.1:{front_port}", suite.phones)
    return _measurement(ctx, measured, "purchases", grpc_calls_per_purchase=5)


@scenario("deployed-record-purchase", ceiling="raw-deployed-record-purchase", explicit=True)
async def deployed_record_purchase(ctx: BenchContext) -> Measurement:
    """POST /v1/purchases:record through the deployed gateway with `wrk` (a Lua script: a
    mall API client's bearer token, a random registered member by phone, new order and request
    ids, 1-3 lines of CNY 10.00-500.00); non-2xx answers fail the scenario."""
    suite = await start_suite(ctx)
    measured = await _http_load(
        ctx, _suite_groups(ctx, suite), suite.http, suite.phones, suite.token
    )
    return _measurement(
        ctx, measured, "purchases", members=len(suite.members), workers=_more_than_one(suite)
    )
