"""The suite of one scenario: every service its own OS process, started as `loyalty-dev run`
starts them (`loyalty_devstack.cli`), so a kill -9 is a real one.

Each scenario gets free ports, databases of its own (`<run>_<nn>_<service>`) and an event
namespace of its own (`<run>n<nn>`) on the run's PostgreSQL and NATS; the services' output goes
to `<folder>/<scenario>.log`, prefixed with their names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx
from loyalty_kit.settings import Settings

from loyalty_devstack.cli import (
    SERVICES,
    ServiceProcess,
    spawn_service,
    suite_env,
    terminate,
    wait_started,
)
from loyalty_devstack.embedded import Infrastructure, free_port

HTTP_READY_SECONDS = 30.0
STREAM_BYTES = 64 * 1024**2


@dataclass
class Suite:
    name: str
    env: dict[str, str]
    settings: Settings
    ports: dict[str, int]
    http_port: int
    log: TextIO
    # Environment of one service's first start only (a fault hook), or of every start of it
    # (the gateway reaching points through a proxy).
    first_env: dict[str, dict[str, str]] = field(default_factory=dict)
    always_env: dict[str, dict[str, str]] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        name: str,
        infra: Infrastructure,
        data_dir: Path,
        prefix: str,
        namespace: str,
        log: TextIO,
        *,
        first_env: Mapping[str, Mapping[str, str]] = {},
        always_env: Mapping[str, Mapping[str, str]] = {},
        gateway_deadline_seconds: float,
    ) -> Suite:
        ports = {service: free_port() for service in SERVICES}
        http_port = free_port()
        env = suite_env(data_dir) | {
            "LOYALTY_DATABASE_URL": infra.database_url,
            "LOYALTY_NATS_URL": infra.nats_url,
            "LOYALTY_DATABASE_PREFIX": prefix,
            "LOYALTY_EVENT_NAMESPACE": namespace,
            "LOYALTY_HOST": "127.0.0.1",
            "LOYALTY_LOG_FORMAT": "console",
            "LOYALTY_GATEWAY_GRPC_PORT": str(ports["gateway"]),
            "LOYALTY_GATEWAY_HTTP_PORT": str(http_port),
            "LOYALTY_GATEWAY_REQUEST_DEADLINE_SECONDS": str(gateway_deadline_seconds),
            # Health follows the database within a second of an outage or its end.
            "LOYALTY_HEALTH_CHECK_SECONDS": "1",
            # Streams of a few minutes' events: JetStream sets their byte limits aside on disk.
            "LOYALTY_EVENT_STREAM_MAX_BYTES": str(STREAM_BYTES),
            "LOYALTY_DEAD_LETTER_MAX_BYTES": str(STREAM_BYTES),
            # Warnings and errors: a line per call would cost the two cores the load needs.
            "LOYALTY_LOG_LEVEL": os.environ.get("LOYALTY_LOG_LEVEL", "WARNING"),
            # 8 clients in flight need a few connections per service, not the default's up to
            # 20 each: five services would take all of a server's 100 (a shared PostgreSQL, or
            # the test run beside it, had none left).
            "LOYALTY_DATABASE_POOL_SIZE": "4",
            # Each process's /metrics on a free port: replicas and runs side by side share none.
            "LOYALTY_METRICS_PORT": "0",
        }
        for service in SERVICES:
            if service != "gateway":
                env[f"LOYALTY_{service.upper()}_PORT"] = str(ports[service])
                env.pop(f"LOYALTY_{service.upper()}_TARGET", None)
        settings = Settings(
            database_url=infra.database_url,
            nats_url=infra.nats_url,
            database_prefix=prefix,
            event_namespace=namespace,
            data_dir=data_dir,
            identity_port=ports["identity"],
            points_port=ports["points"],
            tiers_port=ports["tiers"],
            benefits_port=ports["benefits"],
            insights_port=ports["insights"],
            engagement_port=ports["engagement"],
            gateway_grpc_port=ports["gateway"],
            gateway_http_port=http_port,
            # The environment's targets, if any, are not this suite's.
            identity_target="",
            points_target="",
            tiers_target="",
            benefits_target="",
            insights_target="",
            engagement_target="",
        )
        return cls(
            name,
            env,
            settings,
            ports,
            http_port,
            log,
            {k: dict(v) for k, v in first_env.items()},
            {k: dict(v) for k, v in always_env.items()},
        )

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def pid(self, service: str) -> int:
        return self.processes[service].process.pid

    async def start(self) -> None:
        """Every service in order, then wait until each is SERVING and the gateway's HTTP side
        answers."""
        for name in SERVICES:
            self.processes[name] = await spawn_service(name, self._env_of(name, True), self.log)
        await self._wait({name: self.processes[name] for name in SERVICES})

    def _env_of(self, service: str, first: bool) -> dict[str, str]:
        extra = dict(self.always_env.get(service, {}))
        if first:
            extra |= self.first_env.get(service, {})
        return self.env | extra

    async def _wait(self, started: dict[str, ServiceProcess]) -> None:
        await wait_started(started, {n: self.ports[n] for n in started}, asyncio.Event())
        if "gateway" in started:
            await http_ready(self.http_url)

    def kill(self, service: str) -> int:
        """kill -9 of one service; its pid."""
        pid = self.pid(service)
        os.kill(pid, signal.SIGKILL)
        return pid

    async def exited(self, service: str) -> int:
        """Wait until the service's process has ended; its return code."""
        return await self.processes[service].process.wait()

    async def restart(self, service: str) -> None:
        """Start a service that has ended again (without its first-start environment)."""
        await self.exited(service)
        old = self.processes[service]
        if old.pipe is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(old.pipe), 5)
        self.processes[service] = await spawn_service(
            service, self._env_of(service, False), self.log
        )
        self.restarts[service] = self.restarts.get(service, 0) + 1
        await self._wait({service: self.processes[service]})

    def crashed(self) -> list[str]:
        """Services whose process has ended."""
        return [n for n, s in self.processes.items() if s.process.returncode is not None]

    async def stop(self) -> None:
        """The gateway first (no new requests), then the others, as `loyalty-dev run` does."""
        processes = {n: s.process for n, s in self.processes.items()}
        await terminate([processes[n] for n in ("gateway",) if n in processes])
        await terminate([p for n, p in processes.items() if n != "gateway"])
        for service in self.processes.values():
            if service.pipe is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(service.pipe), 5)
                service.pipe.cancel()


async def http_ready(url: str, timeout: float = HTTP_READY_SECONDS) -> None:
    """Until the gateway's HTTP side answers (uvicorn starts beside its gRPC server)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        while True:
            try:
                if (await http.get("/openapi.json")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if loop.time() > ends:
                raise TimeoutError(f"the gateway's HTTP side at {url} did not answer")
            await asyncio.sleep(0.1)
