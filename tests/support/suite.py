"""The seven services in this test process, tracing into memory, on databases and an event
namespace of their own, with the Huayue demo loaded: for tests that look at what a realistic
run leaves behind (its logs, its traces, its events).

Tracing is set up once per process and applies to servers, channels and engines made after it,
so these services are started here, not taken from the session's (which run untraced).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from loyalty_devstack.demo import load as load_demo
from loyalty_devstack.demo_history import NO_HISTORY
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit import telemetry
from loyalty_kit.server import RunningService, ServiceSpec
from loyalty_kit.settings import Settings

from tests.gateway.conftest import Gateway


@dataclass
class Run:
    gateway: Gateway
    settings: Settings
    services: dict[str, RunningService] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def traced_suite(
    make_settings: Callable[..., Settings], run_id: str, name: str
) -> AsyncIterator[Run]:
    """The seven services, traced into memory; `name` keeps their databases and events apart."""
    from loyalty_benefits.app import SPEC as BENEFITS
    from loyalty_engagement.app import SPEC as ENGAGEMENT
    from loyalty_gateway.app import SPEC as GATEWAY
    from loyalty_identity.app import SPEC as IDENTITY
    from loyalty_insights.app import SPEC as INSIGHTS
    from loyalty_points.app import SPEC as POINTS
    from loyalty_tiers.app import SPEC as TIERS

    for job in ("POINTS_JOB", "TIERS_JOB", "BENEFITS_ISSUANCE"):
        os.environ[f"LOYALTY_{job}_INTERVAL_SECONDS"] = "3600"  # as the other suites do
    settings = make_settings(
        database_prefix=f"{run_id}_{name}_",
        event_namespace=f"{run_id}{name}",
        otel_exporter="memory",
        # A second suite beside the session's: a few connections a service, not up to 20 each
        # (seven services twice would take more than a PostgreSQL's 100).
        database_pool_size=3,
    )
    runner, started = ServiceRunner(settings), {}
    try:
        specs: list[ServiceSpec[Any, ...]] = [
            IDENTITY,
            POINTS,
            TIERS,
            BENEFITS,
            INSIGHTS,
            ENGAGEMENT,
            GATEWAY,
        ]
        for spec in specs:
            started[spec.name] = await runner.start(spec, settings)
            if spec is not GATEWAY:
                settings = settings.model_copy(
                    update={f"{spec.name}_target": started[spec.name].target}
                )
        await load_demo(settings, NO_HISTORY)  # the programme and its members: a quiet suite
        url = f"http://127.0.0.1:{settings.gateway_http_port}"
        yield Run(Gateway(started["gateway"], url), settings, started)
    finally:
        await runner.stop_all()
        telemetry.stop_tracing()
