"""`loyalty-dev`: the developer's command line.

loyalty-dev run      infrastructure + every service, logs prefixed; Ctrl-C stops it all
loyalty-dev infra    only PostgreSQL and NATS (embedded unless the environment names them)
loyalty-dev demo     load what is missing of the Huayue demo programme into a running suite
                     (`run` loads it too): its programme, members and generated history
                     (--history-rows N legacy accounts with their past orders, default 6,000;
                     0: none; or LOYALTY_DEMO_HISTORY_ROWS)
loyalty-dev scan-pii FILE...  find personal data in clear in logs, traces or dumped events
                     (phones, e-mails, resident id numbers, the demo members' names and
                     identities, and each --value); exits 1 when anything is found
loyalty-dev reliability [--quick] [--only SCENARIO ...] [--seconds N] [--json PATH]
                     fault scenarios against the suite (`loyalty-dev reliability --help`)

While `run` or `infra` is up, `<data folder>/env` holds the `export LOYALTY_...` lines the other
command lines need (`. .loyalty/env`, then e.g. `loyalty-gateway clients list`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import fcntl
import json
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loyalty_kit.auth import AuthSettings, development_keys
from loyalty_kit.settings import Settings

from loyalty_devstack import demo
from loyalty_devstack.embedded import DEV_NATS_PORT, Infrastructure, PortTaken, ensure_port_free
from loyalty_devstack.pii import PersonalDataScanner, demo_values

# Start order: the services the others call come first; the gateway last, stopped first.
SERVICES = ("identity", "points", "tiers", "benefits", "insights", "engagement", "gateway")
COLOURS = {
    "identity": 36,
    "points": 33,
    "tiers": 35,
    "benefits": 32,
    "insights": 31,
    "engagement": 91,
    "gateway": 34,
}
TAIL_LINES = 30  # what is shown of a service that stopped during start
START_TIMEOUT_SECONDS = 60.0


class StartFailed(RuntimeError):
    pass


@dataclass
class ServiceProcess:
    name: str
    process: asyncio.subprocess.Process
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=50))
    pipe: asyncio.Task[None] | None = None

    async def last_lines(self) -> str:
        """Its last lines of output, once it has written them all (it has exited)."""
        if self.pipe is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.pipe), 5)
        return "".join(f"    {line}" for line in list(self.tail)[-TAIL_LINES:])


async def _pipe(service: ServiceProcess, stream: asyncio.StreamReader, sink: TextIO) -> None:
    colour = COLOURS.get(service.name, 0)
    name = service.name
    prefix = f"\033[{colour}m{name:>8}\033[0m | " if sink.isatty() else f"{name:>8} | "
    while line := await stream.readline():
        text = line.decode(errors="replace")
        service.tail.append(text)
        sink.write(prefix + text)
        sink.flush()


async def wait_serving(target: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{target} did not become SERVING in {timeout}s")
            await asyncio.sleep(0.2)


def _die_with_parent() -> None:
    """Runs in each service's process before it starts (Linux): SIGTERM when the runner dies,
    however it dies (a closed terminal, kill -9), so no service outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the runner died before the line above
        os._exit(1)


async def terminate(processes: list[asyncio.subprocess.Process]) -> None:
    async def one(process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()

    await asyncio.gather(*(one(p) for p in processes))


@contextlib.contextmanager
def holding(data_dir: Path) -> Iterator[None]:
    """One runner per data folder: a lock the system releases when the runner dies, however
    it dies, so a killed runner never leaves the folder locked."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "runner.pid"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode().strip() or "?"
            raise StartFailed(
                f"another loyalty-dev (pid {other}) is using {data_dir}: stop it, or give this "
                "one another folder (LOYALTY_DATA_DIR or --data-dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def service_ports(settings: Settings) -> dict[str, int]:
    port = {n: settings.port_of(n) for n in SERVICES if n != "gateway"}
    port["gateway"] = settings.gateway_grpc_port
    return port


def _check_ports(settings: Settings) -> None:
    """Every port the suite will listen on is free, or the error names who holds it (gRPC
    would otherwise share a port with another server through SO_REUSEPORT)."""
    variables = {n: f"LOYALTY_{n.upper()}_PORT" for n in SERVICES if n != "gateway"}
    variables["gateway"] = "LOYALTY_GATEWAY_GRPC_PORT"
    ports = service_ports(settings)
    for name, variable in variables.items():
        ensure_port_free(ports[name], variable)
    ensure_port_free(settings.gateway_http_port, "LOYALTY_GATEWAY_HTTP_PORT")


def make_development_keys(data_dir: Path) -> None:
    """Every development key of the folder, made once before any service starts (the services
    then only read them)."""
    auth = AuthSettings()
    if auth.dev_keys and not auth.public_keys:
        development_keys(data_dir)
    from loyalty_identity.adapters.crypto import development_keys_file
    from loyalty_identity.settings import IdentityKeys

    identity = IdentityKeys()
    if identity.dev_keys and not (identity.keys or identity.blind_index_key):
        development_keys_file(data_dir)


def write_env_file(data_dir: Path, env: dict[str, str]) -> Path:
    """`<data folder>/env`: the settings of this run, for the other command lines."""
    path = data_dir / "env"
    lines = [
        "# The settings of the suite `loyalty-dev` runs on this data folder, for the command",
        "# lines (loyalty-gateway clients, loyalty-identity rotate-keys, loyalty-dev demo):",
        f"#   . {path}",
        *(
            f"export {key}={shlex.quote(value)}"
            for key, value in sorted(env.items())
            if key.startswith("LOYALTY_") and key != "LOYALTY_LOG_FORMAT"
        ),
        # ... and the environment's command lines themselves (loyalty-gateway, ...).
        f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"',
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


async def wait_started(
    services: dict[str, ServiceProcess], ports: dict[str, int], stop: asyncio.Event
) -> None:
    """Wait until every service is SERVING; a service that exits first is reported at once
    with its last lines, and so is one still not serving at the timeout."""
    ready = {
        asyncio.create_task(wait_serving(f"127.0.0.1:{ports[name]}")): name for name in services
    }
    exited = {asyncio.create_task(s.process.wait()): name for name, s in services.items()}
    stopper = asyncio.create_task(stop.wait())
    pending: set[asyncio.Future[Any]] = {*ready, *exited, stopper}
    try:
        while any(task in pending for task in ready):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                raise StartFailed("stopped while starting")
            for task in done:
                if task in exited:
                    service = services[exited[task]]
                    raise StartFailed(
                        f"{service.name} exited during start (exit code "
                        f"{service.process.returncode}); its last lines:\n"
                        + await service.last_lines()
                    )
                if task in ready and (error := task.exception()) is not None:
                    service = services[ready[task]]
                    raise StartFailed(
                        f"{service.name} is not SERVING ({error}); its last lines:\n"
                        + "".join(f"    {line}" for line in list(service.tail)[-TAIL_LINES:])
                    )
    finally:
        for task in pending:
            task.cancel()


def suite_env(data_dir: Path) -> dict[str, str]:
    """The environment of a development suite's processes: this one's, with the data folder,
    development keys, trusted caller headers, the console's development cookies and a small
    database pool unless it says otherwise."""
    return {
        **os.environ,
        "LOYALTY_DATA_DIR": str(data_dir),
        "LOYALTY_IDENTITY_DEV_KEYS": os.environ.get("LOYALTY_IDENTITY_DEV_KEYS", "true"),
        "LOYALTY_AUTH_DEV_KEYS": os.environ.get("LOYALTY_AUTH_DEV_KEYS", "true"),
        # Development: WeChat sign-in through the development fake (the code dev-<openid>).
        "LOYALTY_IDENTITY_WECHAT_MODE": os.environ.get(
            "LOYALTY_IDENTITY_WECHAT_MODE", "development"
        ),
        # Development: grpcurl with x-loyalty-* headers works without a token.
        "LOYALTY_AUTH_TRUST_HEADERS": os.environ.get("LOYALTY_AUTH_TRUST_HEADERS", "true"),
        "LOYALTY_LOG_FORMAT": os.environ.get("LOYALTY_LOG_FORMAT", "console"),
        # The console on plain http at 127.0.0.1: its cookies without Secure.
        "LOYALTY_GATEWAY_CONSOLE_INSECURE_COOKIES": os.environ.get(
            "LOYALTY_GATEWAY_CONSOLE_INSECURE_COOKIES", "true"
        ),
        # Up to 10 connections a service (5 kept), not the default's 20: seven services fit
        # in a PostgreSQL's 100 beside another suite on the same server.
        "LOYALTY_DATABASE_POOL_SIZE": os.environ.get("LOYALTY_DATABASE_POOL_SIZE", "5"),
        "PYTHONUNBUFFERED": "1",
    }


async def spawn_service(
    name: str, env: dict[str, str], sink: TextIO | None = None
) -> ServiceProcess:
    """`python -m loyalty_<name>` as a process of its own, its output lines prefixed with its
    name into `sink` (default stdout) and the last of them kept."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"loyalty_{name}",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Ctrl-C reaches the runner, which stops them in order ...
        start_new_session=True,
        # ... and they stop when the runner dies, however it dies.
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    service = ServiceProcess(name, process)
    assert process.stdout is not None
    service.pipe = asyncio.create_task(_pipe(service, process.stdout, sink or sys.stdout))
    return service


async def run_suite(data_dir: Path) -> int:
    env = suite_env(data_dir)
    os.environ.update(env)  # the runner's own calls (the demo loader) see what the services see
    infra = Infrastructure(
        data_dir, nats_port=int(os.environ.get("LOYALTY_DEV_NATS_PORT", DEV_NATS_PORT))
    )
    services: dict[str, ServiceProcess] = {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    env_file = data_dir / "env"
    code = 0
    try:
        with holding(data_dir):
            try:
                settings = Settings()
                _check_ports(settings)
                infra.start()
                for note in infra.notes():
                    print(note, flush=True)
                env["LOYALTY_DATABASE_URL"] = infra.database_url
                env["LOYALTY_NATS_URL"] = infra.nats_url
                os.environ.update(env)
                settings = Settings()
                make_development_keys(data_dir)
                for name in SERVICES:
                    services[name] = await spawn_service(name, env)
                ports = service_ports(settings)
                await wait_started(services, ports, stop)
                print(await demo.load(settings), flush=True)
                client = await _demo_client(data_dir, env)
                operator = await _dev_operator(data_dir, env)
                write_env_file(data_dir, env)
                _print_ready(settings, ports, infra, client, data_dir, operator)
                exited = [asyncio.create_task(s.process.wait()) for s in services.values()]
                stopper = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait(
                    [stopper, *exited], return_when=asyncio.FIRST_COMPLETED
                )
                if stopper not in done:
                    crashed = [n for n, s in services.items() if s.process.returncode is not None]
                    print(f"service exited: {', '.join(crashed)}; stopping the suite", flush=True)
                    code = 1
            except (StartFailed, PortTaken) as error:
                print(f"could not start the suite: {error}", flush=True)
                code = 1
            except Exception as error:
                print(f"could not start the suite: {type(error).__name__}: {error}", flush=True)
                code = 1
            finally:
                env_file.unlink(missing_ok=True)
                # The gateway first (no new requests come in), then the services together.
                processes = {n: s.process for n, s in services.items()}
                await terminate([processes[n] for n in ("gateway",) if n in processes])
                await terminate([p for n, p in processes.items() if n != "gateway"])
                for service in services.values():
                    if service.pipe is not None:
                        service.pipe.cancel()
                infra.stop()
                codes = ", ".join(f"{n} {p.returncode}" for n, p in processes.items())
                print(f"stopped (exit codes: {codes})" if codes else "stopped", flush=True)
    except StartFailed as error:  # the folder is another runner's
        print(f"could not start the suite: {error}", flush=True)
        code = 1
    return code


def _print_ready(
    settings: Settings,
    ports: dict[str, int],
    infra: Infrastructure,
    client: str,
    data_dir: Path,
    operator: str = "",
) -> None:
    shown = os.path.relpath(data_dir) if data_dir.is_relative_to(Path.cwd()) else str(data_dir)
    http = settings.gateway_http_port
    print(
        "\nloyalty suite is up (Ctrl-C stops it)\n"
        f"  gateway   http://127.0.0.1:{http}   grpc 127.0.0.1:{ports['gateway']}\n"
        + "".join(f"  {n:<9} grpc 127.0.0.1:{ports[n]}\n" for n in SERVICES if n != "gateway")
        + "".join(f"  {k:<9} {v}\n" for k, v in infra.describe().items())
        + "  metrics   "
        + "  ".join(f"{n} :{settings.metrics_port_of(n)}" for n in SERVICES)
        + "   (http://127.0.0.1:<port>/metrics)\n"
        + f"  API client (admin, for trying the HTTP API): {client}\n"
        f"    TOKEN=$(curl -s -u '{client}' -X POST "
        f"localhost:{http}/v1/token | jq -r .access_token)\n"
        f'    curl -s -H "Authorization: Bearer $TOKEN" localhost:{http}/v1/ladder\n'
        f"  docs      http://127.0.0.1:{http}/docs\n"
        f"  console   http://127.0.0.1:{http}/console/   sign in as {operator or '(none)'}\n"
        f"  me        http://127.0.0.1:{http}/me/   a member's own page (the SMS code: "
        f"localhost:{http}/v1/transactionalMessages?phone=...)\n"
        f"  command lines (loyalty-gateway clients, ...): . {shown}/env\n",
        flush=True,
    )


async def create_api_client(
    env: dict[str, str], unit: str, scopes: str, description: str, rate: int | None = None
) -> dict[str, Any] | None:
    """A new API client made with the gateway's own CLI (`loyalty-gateway clients create`):
    its JSON (client_id, client_secret, ...), or None when it could not be made."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loyalty_gateway",
        "clients",
        "create",
        "--unit",
        unit,
        "--scopes",
        scopes,
        "--description",
        description,
        *(["--rate", str(rate)] if rate is not None else []),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        return None
    made: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return made


async def _demo_client(data_dir: Path, env: dict[str, str]) -> str:
    """`id:secret` of the development API client (admin), made once per data folder with the
    gateway's own CLI and kept beside the data (a development folder only)."""
    path = data_dir / "demo-api-client.json"
    if not path.exists():
        made = await create_api_client(env, "group", "admin", "make run demo client")
        if made is None:
            return "(could not be made: see the gateway's log)"
        path.write_text(json.dumps(made))
        path.chmod(0o600)
    made = json.loads(path.read_text())
    return f"{made['client_id']}:{made['client_secret']}"


DEV_OPERATOR = "dev-admin"


async def _dev_operator(data_dir: Path, env: dict[str, str]) -> str:
    """`login / password` of the development console operator (group_admin), made once per
    data folder with the gateway's CLI; the password is kept in the folder (console-login),
    never in git."""
    path = data_dir / "console-login"
    if not path.exists():
        made = None
        for action in (
            ["create", "--login", DEV_OPERATOR, "--role", "group_admin"],
            ["reset-password", DEV_OPERATOR],  # the database kept it, the file is gone
        ):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "loyalty_gateway",
                "operators",
                *action,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await process.communicate()
            if process.returncode == 0:
                made = json.loads(out.decode().strip().splitlines()[-1])
                break
        if made is None:
            return "(could not be made: see the gateway's log)"
        path.write_text(json.dumps({"login": DEV_OPERATOR, "password": made["password"]}))
        path.chmod(0o600)
    stored = json.loads(path.read_text())
    return f"{stored['login']} / {stored['password']}"


async def run_infra(data_dir: Path) -> int:
    infra = Infrastructure(
        data_dir, nats_port=int(os.environ.get("LOYALTY_DEV_NATS_PORT", DEV_NATS_PORT))
    )
    try:
        with holding(data_dir):
            infra.start()
            try:
                for note in infra.notes():
                    print(note, file=sys.stderr, flush=True)
                env = {
                    "LOYALTY_DATABASE_URL": infra.database_url,
                    "LOYALTY_NATS_URL": infra.nats_url,
                    "LOYALTY_DATA_DIR": str(data_dir),
                }
                write_env_file(data_dir, env)
                for key, value in env.items():
                    print(f"export {key}={shlex.quote(value)}")
                sys.stdout.flush()
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
            finally:
                (data_dir / "env").unlink(missing_ok=True)
                infra.stop()
    except (StartFailed, PortTaken) as error:
        print(f"could not start: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def scan_pii(files: list[Path], values: list[str]) -> int:
    """Every finding, masked, one a line; 0 when none, 1 when some, 2 when a file is missing."""
    if not files:
        print("scan-pii: name the files to scan", file=sys.stderr)
        return 2
    scanner = PersonalDataScanner([*demo_values(), *values])
    found = 0
    for path in files:
        if not path.is_file():
            print(f"scan-pii: {path}: no such file", file=sys.stderr)
            return 2
        for finding in scanner.scan_file(path):
            print(finding)
            found += 1
    print(f"{found} personal values in clear in {len(files)} files", file=sys.stderr)
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["reliability"]:  # its own options
        from loyalty_devstack.reliability.cli import main as reliability

        return reliability(argv[1:])
    parser = argparse.ArgumentParser(
        prog="loyalty-dev",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["run", "infra", "demo", "scan-pii", "reliability"])
    parser.add_argument("files", nargs="*", type=Path, help="scan-pii: the files to scan")
    parser.add_argument(
        "--value",
        action="append",
        default=[],
        help="scan-pii: a personal value to look for as well (repeatable)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("LOYALTY_DATA_DIR", ".loyalty")),
        help="where the embedded servers, development keys and env live (LOYALTY_DATA_DIR, "
        "default .loyalty)",
    )
    parser.add_argument(
        "--history-rows",
        type=int,
        help="run, demo: legacy accounts of the demo's generated history, over the mall, the "
        "hotel and the cinema, with about two years of their past orders (default 6,000; 0: "
        "none; LOYALTY_DEMO_HISTORY_ROWS)",
    )
    args = parser.parse_args(argv)
    if args.history_rows is not None:
        if args.history_rows < 0:
            parser.error("--history-rows is a number of rows, 0 or more")
        os.environ["LOYALTY_DEMO_HISTORY_ROWS"] = str(args.history_rows)
    if args.command == "scan-pii":
        return scan_pii(args.files, args.value)
    if args.files:
        parser.error(f"{args.command} takes no files")
    data_dir = args.data_dir.resolve()  # the services and the env file see one absolute path
    if args.command == "run":
        return asyncio.run(run_suite(data_dir))
    if args.command == "infra":
        return asyncio.run(run_infra(data_dir))
    print(asyncio.run(demo.load(Settings())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
