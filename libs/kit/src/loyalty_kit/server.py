"""grpc.aio server bootstrap, the same for every service.

A service describes itself with a `ServiceSpec` (its name, the gRPC services it serves, how to
add its servicers, its migrations, its event consumers and background jobs); the kit does the
rest, in this order:

1. tracing (before any server, channel or engine exists);
2. its own database: created if missing, migrated (dev default), engine and sessions;
3. NATS JetStream: its stream, the outbox relay;
4. the service's composition root (`ServiceSpec.bootstrap`, the service's bootstrap.py): a typed
   object of its clock, settings, caches, peer clients and unit-of-work factory, handed to its
   servicers, consumers, jobs and commands (keyword arguments of `start_service` reach it: tests
   hand in a clock or a fake peer);
5. the gRPC server with the error-mapping interceptor, the standard health service and
   reflection (v1 and v1alpha); health says NOT_SERVING until the database answers, and
   follows it after;
6. its consumers and jobs;
7. on SIGTERM/SIGINT: health NOT_SERVING, `server.stop(grace)` so calls in flight finish, then
   jobs stop, NATS drains and the engine closes.

With `LOYALTY_WORKERS=N` (N > 1) `serve` is a small supervisor (`supervise`) of N forked worker
processes, each all of the above on the same ports: gRPC binds with SO_REUSEPORT (the gateway's
HTTP listener too), so the kernel spreads new connections over the workers. Worker 0 serves
/metrics; the others serve none. The supervisor forwards SIGTERM/SIGINT to the workers and exits
0 when all of them stopped cleanly; a worker that dies on its own stops the others and the
supervisor exits 1, so whatever restarts the process (Kubernetes, systemd) restarts all of it.
Workers are replicas on one host: migrations take an advisory lock, the outbox relay publishes
from one process at a time (an advisory lock), consumers share their durable pull consumer and
background jobs take their rows FOR UPDATE SKIP LOCKED or an advisory lock, as replicas do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import inspect
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typing_extensions import ParamSpec, TypeVar

from loyalty_kit import audit, db, events, housekeeping, metrics, migrations
from loyalty_kit.access import Rule
from loyalty_kit.auth import TokenVerifier
from loyalty_kit.inbox import DeliveryPolicy, EventConsumer
from loyalty_kit.interceptors import AuditWriter, MemberTokenCheck, ServiceInterceptor
from loyalty_kit.logs import configure_logging, get_logger
from loyalty_kit.memory import bound_allocator, freeze_start_up_objects
from loyalty_kit.metrics import ServiceMetrics
from loyalty_kit.outbox import Outbox, OutboxRelay
from loyalty_kit.reflection import enable_reflection
from loyalty_kit.settings import Settings
from loyalty_kit.telemetry import setup_tracing
from loyalty_kit.uow import UnitOfWork

log = get_logger("loyalty.server")


def connection_age_options(settings: Settings) -> list[tuple[str, int]]:
    """Close each client connection after `grpc_max_connection_age_seconds`, so clients
    balancing round-robin over a headless Service resolve it again and find new replicas; calls
    in flight get the longest outbound deadline to finish."""
    if settings.grpc_max_connection_age_seconds <= 0:
        return []
    return [
        ("grpc.max_connection_age_ms", int(settings.grpc_max_connection_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.max_deadline_seconds * 1000)),
    ]


@dataclass
class ServiceContext:
    """What the kit gives a running service: its settings, database and bus connections, and
    the event that says it is stopping. A service's bootstrap builds its root from it."""

    name: str
    settings: Settings
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    nats: NATS | None = None
    js: JetStreamContext | None = None
    # Set when the service begins to stop: jobs watch it to finish their work cleanly before
    # they are cancelled.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # What followed an operator command on the command line (`loyalty-<name> <command> ...`).
    args: list[str] = field(default_factory=list)
    # The service's Prometheus registry and instruments (see loyalty_kit.metrics).
    metrics: ServiceMetrics | None = None

    @property
    def database(self) -> async_sessionmaker[AsyncSession]:
        """The service's sessions (a service that uses a database has them once started)."""
        if self.sessions is None:
            raise RuntimeError(f"{self.name} has no database")
        return self.sessions

    def uow(self) -> UnitOfWork:
        if self.sessions is None:
            raise RuntimeError(f"{self.name} has no database")
        return UnitOfWork(self.sessions, self.settings.event_namespace)


Job = Callable[[], Awaitable[None]]
Root = TypeVar("Root", default=Any)
T = TypeVar("T")


def event_loop_name() -> str:
    """`uvloop` or `asyncio`: whose event loop runs this code."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


# The keyword arguments a service's bootstrap takes beyond the context (none by default).
Wiring = ParamSpec("Wiring", default=[])
NATS_DRAIN_SECONDS = 3.0
CANCEL_WAIT_SECONDS = 5.0  # how long cancelled tasks and the engine get to finish on stop
DOWN_CHECK_SECONDS = 1.0  # how often health re-checks a database that did not answer
MIN_CHECK_GAP_SECONDS = 0.1
RESTART_PAUSE_SECONDS = 1.0  # before crashed background work starts again (doubling)
RESTART_PAUSE_MAX_SECONDS = 60.0


def _context_itself(context: ServiceContext) -> ServiceContext:
    return context


# The default bootstrap, for a service whose root is the kit's context.
CONTEXT_ITSELF: Any = _context_itself


@dataclass
class ServiceSpec(Generic[Root, Wiring]):
    """A service as the kit runs it. `Root` is what its bootstrap builds (the context itself
    for a service without one); servicers, consumers, jobs and commands receive it."""

    name: str
    service_names: Sequence[str]
    add_servicers: Callable[[grpc.aio.Server, Root], None]
    bootstrap: Callable[Concatenate[ServiceContext, Wiring], Root] = CONTEXT_ITSELF
    migrations: str | None = None
    consumers: Callable[[Root], Sequence[EventConsumer]] = lambda _root: ()
    jobs: Callable[[Root], Sequence[Job]] = lambda _root: ()
    uses_database: bool = True
    publishes_events: bool = True
    port: Callable[[Settings], int] | None = None
    # Who may call what: one rule per RPC method name (the service's entrypoints/access.py);
    # the interceptor refuses a method without one.
    access: Mapping[str, Rule] = field(default_factory=dict)
    # Extra operator commands: `loyalty-<name> <command>`, run against the service's database.
    commands: dict[str, Callable[[Root], Awaitable[None]]] = field(default_factory=dict)
    # Where the entries of its audited calls go when it has no outbox (the gateway keeps the
    # audit log itself): given its sessions. Services with an outbox write them there.
    audit_store: Callable[[async_sessionmaker[AsyncSession]], AuditWriter] | None = None
    # A check of members' own tokens beyond their signature (identity: the token's session
    # still open, its member not erased), given the root.
    member_tokens: Callable[[Root], MemberTokenCheck] | None = None

    def port_in(self, settings: Settings) -> int:
        return self.port(settings) if self.port else settings.port_of(self.name)


class RunningService(Generic[Root]):
    def __init__(
        self,
        spec: ServiceSpec[Root, Any],
        context: ServiceContext,
        bootstrap: Callable[[ServiceContext], Root],
    ) -> None:
        self.spec = spec
        self.context = context
        self._bootstrap = bootstrap
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port = 0
        self.relay: OutboxRelay | None = None
        self.consumers: list[EventConsumer] = []
        self._tasks: list[asyncio.Task[None]] = []  # relay, consumers, health watcher
        self._jobs: list[asyncio.Task[None]] = []  # the spec's jobs, which watch `stopping`
        self._stopped = False
        self.metrics = context.metrics = ServiceMetrics(spec.name)

    @property
    def metrics_port(self) -> int | None:
        """The port of the service's /metrics (None when it serves none)."""
        endpoint = self.metrics.endpoint
        return endpoint.port if endpoint is not None else None

    @property
    def target(self) -> str:
        host = self.context.settings.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
        return f"{host}:{self.port}"

    async def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.spec.service_names):
            await self.health.set(name, status)
        self.metrics.serving.set(1 if serving else 0)

    async def _watch_database(self) -> None:
        """Health follows the database: checked every `health_check_seconds`, at once when a
        unit of work met it unavailable (`db.outage_signal`), and every second while it is
        down, so the service is SERVING again soon after the database is back."""
        interval = self.context.settings.health_check_seconds
        serving: bool | None = None
        while True:
            engine = self.context.engine
            outage = db.outage_signal(engine) if engine is not None else asyncio.Event()
            outage.clear()
            ok = engine is None or await db.database_answers(engine)
            if ok != serving:
                await self._set_health(ok)
                if serving is not None:
                    log.warning("health changed", service=self.spec.name, serving=ok)
                serving = ok
            if not ok:
                await asyncio.sleep(min(interval, DOWN_CHECK_SECONDS))
                continue
            await asyncio.sleep(MIN_CHECK_GAP_SECONDS)  # a burst of failures, one check
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(outage.wait(), interval)

    def _spawn(self, job: Job, name: str, *, is_job: bool = False) -> None:
        """Run background work (the relay, a consumer, a job) for the life of the service: work
        that crashes is logged with its traceback and started again after a pause that doubles
        (1 s up to a minute), so one bug or a surprise from a dependency never leaves a service
        serving without its consumers or relay. Work that returns is done."""
        stopping = self.context.stopping

        async def guarded() -> None:
            pause = RESTART_PAUSE_SECONDS
            while True:
                try:
                    await job()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("background work crashed; restarting", job=name, after=pause)
                    metrics.restarted(name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), pause)
                if stopping.is_set():
                    return
                pause = min(pause * 2, RESTART_PAUSE_MAX_SECONDS)

        # The task records into this service's metrics (its jobs, consumer, relay).
        task = asyncio.create_task(guarded(), name=name, context=metrics.context_of(self.metrics))
        (self._jobs if is_job else self._tasks).append(task)

    @property
    def root(self) -> Root:
        """The service's composition root (its clock, settings, caches, peers)."""
        return self._root

    def _audit_writer(self) -> AuditWriter | None:
        """How the interceptor writes the audit entry of a call that committed nothing: to the
        service's outbox, in a transaction of its own (or its `audit_store`; a service with
        neither audits nothing)."""
        sessions = self.context.sessions
        if sessions is not None and self.spec.audit_store is not None:
            return self.spec.audit_store(sessions)
        if sessions is None or not self.spec.publishes_events:
            return None
        namespace = self.context.settings.event_namespace

        async def write(entry: AuditEntryRecorded) -> None:
            async with sessions() as session, session.begin():
                await Outbox(session, namespace).add(entry, event_id=uuid.UUID(entry.entry_id))

        return write

    async def start(self, port: int | None = None) -> RunningService[Root]:
        spec, ctx, settings = self.spec, self.context, self.context.settings
        setup_tracing(spec.name, settings)
        if spec.uses_database:
            url = settings.service_database_url(spec.name)
            if settings.database_create:
                await db.ensure_database(settings.server_url, settings.database_for(spec.name))
            ctx.engine = db.create_engine(url, settings.database_pool_size)
            ctx.sessions = db.session_factory(ctx.engine)
            if settings.migrate_on_start and spec.migrations:
                await migrations.upgrade(ctx.engine, spec.migrations)
        if settings.nats_url:
            ctx.nats = await events.connect(settings.nats_url, f"loyalty-{spec.name}")
            ctx.js = ctx.nats.jetstream()
            if spec.publishes_events and ctx.engine is not None:
                await events.ensure_stream(
                    ctx.js,
                    settings.event_namespace,
                    spec.name,
                    events.StreamLimits.of_events(settings),
                )
                # The audit log's shared stream: every service's audited calls go to it.
                await events.ensure_stream(
                    ctx.js,
                    settings.event_namespace,
                    audit.AUDIT_STREAM,
                    events.StreamLimits.of_events(settings),
                )
                self.relay = OutboxRelay(
                    ctx.engine,
                    ctx.js,
                    batch_size=settings.outbox_batch_size,
                    poll_seconds=settings.outbox_poll_seconds,
                    linger_seconds=settings.outbox_linger_seconds,
                )
        elif spec.publishes_events:
            log.warning("LOYALTY_NATS_URL not set: events stay in the outbox", service=spec.name)
        self._root = root = self._bootstrap(ctx)

        verifier = TokenVerifier.from_settings(settings.data_dir)
        server = grpc.aio.server(
            interceptors=[
                ServiceInterceptor(
                    spec.name,
                    verifier,
                    spec.access,
                    self.metrics,
                    self._audit_writer(),
                    spec.member_tokens(root) if spec.member_tokens is not None else None,
                )
            ],
            # Explicit bounds: a larger request is refused by gRPC itself (RESOURCE_EXHAUSTED)
            # before it is read into memory, and no answer grows past what clients take.
            options=[
                ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
                ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
                # gRPC's default on Linux, made explicit: the workers of `LOYALTY_WORKERS`
                # bind the same port.
                ("grpc.so_reuseport", 1),
                *connection_age_options(settings),
            ],
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        spec.add_servicers(server, root)
        enable_reflection((*spec.service_names, health.SERVICE_NAME), server)
        chosen = spec.port_in(settings) if port is None else port
        self.port = server.add_insecure_port(f"{settings.host}:{chosen}")
        await self._set_health(False)
        await server.start()
        self.server = server

        if self.relay is not None:
            self._spawn(self.relay.run, f"{spec.name}-outbox-relay")
        if ctx.js is not None:
            policy = DeliveryPolicy.from_settings(settings)
            for consumer in spec.consumers(root):
                consumer.policy = policy
                self.consumers.append(consumer)
                self._spawn(
                    functools.partial(consumer.run, ctx.js),
                    f"{spec.name}-consumer-{consumer.name}",
                )
        for index, job in enumerate(spec.jobs(root)):
            self._spawn(job, f"{spec.name}-job-{index}", is_job=True)
        if ctx.engine is not None:
            engine = ctx.engine
            self._spawn(
                lambda: housekeeping.run(engine, settings, ctx.stopping),
                f"{spec.name}-housekeeping",
            )
        self._tasks.append(asyncio.create_task(self._watch_database(), name="health"))
        self.metrics.watch(engine=ctx.engine, js=ctx.js, relay=self.relay, consumers=self.consumers)
        metrics.serve(self.metrics, settings.host, settings.metrics_port_of(spec.name))
        frozen = freeze_start_up_objects()  # out of the collector's walks: see memory.py
        log.info(
            "service started",
            service=spec.name,
            port=self.port,
            metrics_port=self.metrics_port,
            frozen_objects=frozen,
            event_loop=event_loop_name(),
            pid=os.getpid(),
        )
        return self

    async def wait_until_serving(self, timeout: float = 10.0) -> None:
        async def serving() -> None:
            while True:
                response = await self.health.Check(
                    health_pb2.HealthCheckRequest(service=""),
                    None,  # type: ignore[arg-type]
                )
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                await asyncio.sleep(0.02)

        await asyncio.wait_for(serving(), timeout)

    async def stop(self, grace: float | None = None) -> None:
        if self._stopped:
            return
        self._stopped = True
        settings = self.context.settings
        await self.health.enter_graceful_shutdown()
        self.context.stopping.set()
        if self.server is not None:
            await self.server.stop(settings.shutdown_grace_seconds if grace is None else grace)
        await metrics.close(self.metrics)
        # Jobs watch `stopping` and get a moment to finish; what is still running is cancelled.
        if self._jobs:
            await asyncio.wait(self._jobs, timeout=max(1.0, settings.shutdown_grace_seconds))
        for task in (*self._tasks, *self._jobs):
            task.cancel()
        # Bounded too: a task stuck in a database call that ignores cancellation (a server
        # that stopped answering) must not keep the process from stopping.
        tasks = [*self._tasks, *self._jobs]
        if tasks:
            _done, stuck = await asyncio.wait(tasks, timeout=CANCEL_WAIT_SECONDS)
            for task in stuck:
                log.warning("task did not stop in time", task=task.get_name())
        if self.context.nats is not None:
            # Bounded: a drain waiting on a subscription must not outlast the stop's grace.
            try:
                await asyncio.wait_for(self.context.nats.drain(), NATS_DRAIN_SECONDS)
            except Exception:
                with contextlib.suppress(Exception):
                    await self.context.nats.close()
        if self.context.engine is not None:
            try:
                await asyncio.wait_for(self.context.engine.dispose(), CANCEL_WAIT_SECONDS)
            except Exception:
                log.warning("database connections not closed cleanly", service=self.spec.name)
        gc.unfreeze()  # a stopped service's objects can be collected again (a test's process)
        log.info("service stopped", service=self.spec.name)


async def start_service(
    spec: ServiceSpec[Root, Wiring],
    settings: Settings | None = None,
    port: int | None = None,
    *args: Wiring.args,
    **wiring: Wiring.kwargs,
) -> RunningService[Root]:
    """Start a service in this process on `port` (the settings' when None); keyword arguments
    go to its bootstrap (`start_service(POINTS, settings, 0, clock=test_clock)`)."""
    context = ServiceContext(name=spec.name, settings=settings or Settings())

    def bootstrap(context: ServiceContext) -> Root:
        return spec.bootstrap(context, *args, **wiring)

    return await RunningService(spec, context, bootstrap).start(port)


async def serve(spec: ServiceSpec[Any, []], settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (one process: a worker of
    `supervise` when there are several)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start_service(spec, settings)
    print(f"{spec.name} listening on {running.target}", flush=True)
    try:
        await stop.wait()
    finally:
        await running.stop()


async def run_command(
    spec: ServiceSpec[Root, []], settings: Settings, command: str, args: Sequence[str] = ()
) -> None:
    engine = db.create_engine(settings.service_database_url(spec.name), pool_size=2)
    context = ServiceContext(
        name=spec.name,
        settings=settings,
        engine=engine,
        sessions=db.session_factory(engine),
        args=list(args),
    )
    try:
        await spec.commands[command](spec.bootstrap(context))
    finally:
        await engine.dispose()


async def migrate(spec: ServiceSpec[Any, Any], settings: Settings) -> None:
    if spec.migrations is None:
        return
    if settings.database_create:
        await db.ensure_database(settings.server_url, settings.database_for(spec.name))
    engine = db.create_engine(settings.service_database_url(spec.name), pool_size=1)
    try:
        await migrations.upgrade(engine, spec.migrations)
        revision = await migrations.current_revision(engine)
        print(f"{spec.name}: database {settings.database_for(spec.name)} at {revision}")
    finally:
        await engine.dispose()


CONFIGURATION_HELP = (
    "Settings come from LOYALTY_* environment variables (the README's Configuration table). "
    "Under `make run`, `. .loyalty/env` sets those of the running suite (its database, NATS, "
    "data folder and development keys). LOYALTY_WORKERS=N runs `serve` as N worker processes "
    "on the same ports."
)


def main(spec: ServiceSpec[Any, []], argv: Sequence[str] | None = None) -> int:
    """The command line of every service: `loyalty-<name> [serve|migrate|<command>]`."""
    commands = {
        "serve": "run the service (the default)",
        "migrate": "bring the service's database to the latest migration",
        **{name: inspect.getdoc(command) or "" for name, command in spec.commands.items()},
    }
    parser = argparse.ArgumentParser(
        prog=f"loyalty-{spec.name}",
        description="commands:\n"
        + "".join(
            f"  {name:<12} {text.splitlines()[0] if text else ''}\n"
            for name, text in commands.items()
        ),
        epilog=CONFIGURATION_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", default="serve", choices=list(commands))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments")
    args = parser.parse_args(argv)
    command = spec.commands.get(args.command)
    # A command's own --help and usage errors answer before anything needs configuration.
    command_parser = getattr(command, "parser", None)
    if command_parser is not None:
        command_parser().parse_args(args.args)
    elif args.args and args.args[0] in ("-h", "--help"):
        print(f"usage: loyalty-{spec.name} {args.command}\n\n{commands[args.command]}\n")
        print(CONFIGURATION_HELP)
        return 0
    bound_allocator()  # before the servers' threads and buffers: see memory.py
    settings = Settings()
    if spec.uses_database and not settings.database_url:
        print(
            f"loyalty-{spec.name} {args.command}: LOYALTY_DATABASE_URL is not set. "
            + CONFIGURATION_HELP,
            file=sys.stderr,
        )
        return 2
    configure_logging(spec.name, settings.log_level, settings.log_format)
    if args.command == "migrate":
        run_loop(migrate(spec, settings), settings)
    elif args.command in spec.commands:
        run_loop(run_command(spec, settings, args.command, args.args), settings)
    elif settings.workers > 1:
        return supervise(spec, settings)
    else:
        run_loop(serve(spec, settings), settings)
    return 0


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def supervise(spec: ServiceSpec[Any, []], settings: Settings) -> int:
    """`serve` in `settings.workers` forked processes, until SIGTERM or SIGINT (forwarded to
    each as SIGTERM). 0 when every worker stopped cleanly after a stop was asked; 1 when one
    exited on its own (the others are then stopped) or did not stop cleanly.

    The fork happens before anything of the service exists (no event loop, connection, gRPC
    server or thread in this process), which is what gRPC needs of a fork."""
    workers: dict[int, int] = {}  # pid -> index
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    # Signals wait until the workers exist and the handler that forwards them is in place.
    supervisor = os.getpid()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        for index in range(settings.workers):
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the supervisor's code
                code = 1
                try:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                    code = _worker(spec, settings, index, supervisor)
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os._exit(code)
            workers[pid] = index
        for sig in STOP_SIGNALS:
            signal.signal(sig, stop_all)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    log.info("workers started", service=spec.name, workers=len(workers), pids=sorted(workers))
    code = 0
    while workers:
        pid, status = os.wait()  # a signal runs `stop_all`, then the wait goes on
        if pid not in workers:
            continue
        index = workers.pop(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        if not stopping:
            log.error(
                "worker exited; stopping the others",
                service=spec.name,
                worker=index,
                pid=pid,
                exit_code=exit_code,
            )
            stop_all()
            code = 1
        elif exit_code != 0:
            log.error("worker did not stop cleanly", worker=index, pid=pid, exit_code=exit_code)
            code = 1
    log.info("workers stopped", service=spec.name, exit_code=code)
    return code


def _worker(spec: ServiceSpec[Any, []], settings: Settings, index: int, supervisor: int) -> int:
    """One worker of `supervise`: the service as `serve` runs it, its log lines marked with
    `worker`; /metrics from worker 0 only (one port cannot serve several registries)."""
    _die_with(supervisor)
    structlog.contextvars.bind_contextvars(worker=index)
    if index > 0:
        settings = settings.model_copy(update={"metrics_port": -1})
    try:
        run_loop(serve(spec, settings), settings)
    except BaseException:
        log.exception("worker failed", service=spec.name, worker=index)
        return 1
    return 0


def _die_with(supervisor: int) -> None:
    """Linux: SIGTERM when the supervisor dies, however it dies (kill -9), so no worker
    outlives it; a supervisor already gone stops the worker at once."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != supervisor:
        os._exit(1)


def run_loop(main: Coroutine[Any, Any, T], settings: Settings) -> T:
    """`main` run to its end on a new event loop: uvloop's (`LOYALTY_UVLOOP`, the default),
    else asyncio's own. A process's entry point only: tests keep their own loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if settings.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
