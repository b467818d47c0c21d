"""What a scenario gets: the run's servers, settings under the run's own namespace, knobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from loyalty_devstack.embedded import Infrastructure, drop_run_data, free_port
from loyalty_kit import db
from loyalty_kit.settings import Settings
from sqlalchemy.engine import URL

from bench.load import Op, closed_loop
from bench.registry import Measurement


@dataclass
class BenchContext:
    infra: Infrastructure
    run_id: str  # database prefix `<run_id>_` and event namespace `<run_id>`
    seconds: float
    warmup: float
    concurrency: int
    events: int
    members: int | None = None  # --members; None: each scenario's default
    import_rows: int | None = None  # --import-rows; None: the import scenarios' default
    orders: int | None = None  # --orders; None: the order scenarios' default (500,000)
    rate: float = 30.0  # --rate: operations per second of open-loop scenarios
    soak_seconds: float = 180.0  # --soak-seconds: length of the soak's mixed load
    only: tuple[str, ...] = ()  # the scenarios named with --only (empty: all)
    shared: dict[str, Any] = field(default_factory=dict)  # what scenarios of a run share
    # Run at the end, last added first, before the run's data is dropped (a suite of processes
    # the scenarios of a run share, stopped once)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.run_id

    def settings(self, **overrides: Any) -> Settings:
        """Settings for this run, like the test fixtures make them: own databases and subjects."""
        values: dict[str, Any] = {
            "database_url": self.infra.database_url,
            "nats_url": self.infra.nats_url,
            "database_prefix": f"{self.run_id}_",
            "event_namespace": self.run_id,
            "host": "127.0.0.1",
            "shutdown_grace_seconds": 1.0,
            "gateway_http_port": free_port(),
            "log_format": "json",
        }
        values.update(overrides)
        return Settings(**values)

    async def database(self, name: str) -> URL:
        """Create the run's database `<run_id>_<name>`; its SQLAlchemy (asyncpg) URL."""
        settings = self.settings()
        await db.ensure_database(settings.server_url, settings.database_for(name))
        return settings.service_database_url(name)

    async def closed_loop(
        self, op: Op, *, unit: str, concurrency: int | None = None
    ) -> Measurement:
        """`op` back to back from `concurrency` (default --concurrency) workers for --seconds."""
        return await closed_loop(
            op,
            concurrency=concurrency or self.concurrency,
            seconds=self.seconds,
            warmup=self.warmup,
            unit=unit,
        )

    async def cleanup(self) -> None:
        """Run the closers, then drop every database and stream this run made (servers may be
        shared)."""
        while self.closers:
            await self.closers.pop()()
        await drop_run_data(self.infra.database_url, self.infra.nats_url, self.run_id)
