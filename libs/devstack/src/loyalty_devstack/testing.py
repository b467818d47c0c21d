"""pytest fixtures: real PostgreSQL and NATS JetStream for the tests that need them.

The servers start lazily, the first time a test asks for a fixture that needs them (`infra`,
`settings`, `services`, a service); tests on fakes start none. Embedded servers by default (in a
temporary folder, removed afterwards); the servers named by LOYALTY_DATABASE_URL /
LOYALTY_NATS_URL when set. Each test run gets a run id: its databases are `<run id>_<service>`
and its event subjects and streams live under the namespace `<run id>`, so runs never see each
other's data, even on shared servers. Everything the run made is dropped at the end.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from loyalty_kit.auth import ServiceCredentials, development_keys
from loyalty_kit.caller import Caller
from loyalty_kit.logs import configure_logging
from loyalty_kit.server import Root, RunningService, ServiceSpec, Wiring, start_service
from loyalty_kit.settings import Settings

from loyalty_devstack.embedded import Infrastructure, drop_run_data, free_port


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    configure_logging("test", "INFO", "json")
    # Services started in-process may generate development keys into the test data folder.
    os.environ.setdefault("LOYALTY_IDENTITY_DEV_KEYS", "true")
    # ... and a key pair for API clients' bearer tokens (gateway signs, every service checks).
    os.environ.setdefault("LOYALTY_AUTH_DEV_KEYS", "true")
    # ... and the services trust no caller headers, as deployed: every call the tests make
    # carries a bearer token (`metadata_for`), and so does every call one service makes to
    # another on its own account.
    os.environ.setdefault("LOYALTY_AUTH_TRUST_HEADERS", "false")


_credentials: ServiceCredentials | None = None


@pytest.fixture(scope="session", autouse=True)
def _test_credentials(data_dir: Path) -> None:
    """Tokens for the tests' callers, signed with the run's development key."""
    global _credentials
    _credentials = ServiceCredentials("tests", development_keys(data_dir)[0])


def metadata_for(caller: Caller) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata a test sends to call as `caller` (a bearer token)."""
    if _credentials is None:
        return caller.metadata()
    return _credentials.metadata(caller)


@pytest.fixture(scope="session")
def run_id() -> str:
    return f"t{os.getpid()}{secrets.token_hex(3)}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def infra(run_id: str) -> AsyncIterator[Infrastructure]:
    """PostgreSQL and NATS, started the first time a test needs them (through `settings`,
    `services` or a service fixture), never for tests that need no server; what the run made
    on them is dropped when the session ends."""
    with tempfile.TemporaryDirectory(prefix="loyalty-test-") as folder:
        started = Infrastructure(Path(folder), keep=False).start()
        try:
            yield started
            await drop_run_data(started.database_url, started.nats_url, run_id)
        finally:
            started.stop()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def make_settings(infra: Infrastructure, run_id: str, data_dir: Path) -> Callable[..., Settings]:
    """Settings for this run: its own databases and event namespace, free ports."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": infra.database_url,
            "nats_url": infra.nats_url,
            "database_prefix": f"{run_id}_",
            "event_namespace": run_id,
            "host": "127.0.0.1",
            "shutdown_grace_seconds": 2.0,
            "outbox_poll_seconds": 0.2,
            "health_check_seconds": 0.2,
            "gateway_http_port": free_port(),
            "metrics_port": 0,  # every service's /metrics on a free port of its own
            "log_format": "console",
            "data_dir": data_dir,
            # Up to 10 connections a service (5 kept), not 20: a run's suites and the suites
            # the tests start beside them share one PostgreSQL's 100.
            "database_pool_size": 5,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


class ServiceRunner:
    """Starts services in-process on free ports and stops them at the end of the test."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.running: list[RunningService] = []

    async def start(
        self,
        spec: ServiceSpec[Root, Wiring],
        settings: Settings | None = None,
        *args: Wiring.args,
        **wiring: Wiring.kwargs,
    ) -> RunningService[Root]:
        """`runner.start(SPEC, settings, clock=clock)`: keyword arguments go to the service's
        bootstrap."""
        return await self.start_on(0, spec, settings, *args, **wiring)

    async def start_on(
        self,
        port: int,
        spec: ServiceSpec[Root, Wiring],
        settings: Settings | None = None,
        *args: Wiring.args,
        **wiring: Wiring.kwargs,
    ) -> RunningService[Root]:
        """As `start`, on `port` (0: a free one), for a service others were told of before
        it started (the session's engagement, which identity sends its codes through)."""
        service = await start_service(spec, settings or self.settings, port, *args, **wiring)
        self.running.append(service)
        await service.wait_until_serving()
        return service

    async def stop_all(self) -> None:
        for service in reversed(self.running):
            await service.stop(grace=0.5)
        self.running.clear()


@pytest_asyncio.fixture(loop_scope="session")
async def services(settings: Settings) -> AsyncIterator[ServiceRunner]:
    runner = ServiceRunner(settings)
    try:
        yield runner
    finally:
        await runner.stop_all()
