"""`loyalty-admin` against a suite of the five services and the gateway of its own (databases
`<run>_<tag>_<service>` and an event namespace of their own, the tag a test module's
`SUITE_TAG`, "adm" by default), so what a module changes is nobody else's. A command runs as
the console script does: in a thread (`admin`) or a process of its own (`process`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from loyalty_admin.cli import main
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

ADMIN = Path(sys.executable).with_name("loyalty-admin")


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Suite:
    env: dict[str, str]
    services: dict[str, RunningService] = field(default_factory=dict)

    async def admin(self, *args: str) -> Result:
        """Run the command line's `main` as the console script does, in a thread (the services
        share this loop), with the suite's settings in the environment for the call only."""
        out, err = io.StringIO(), io.StringIO()
        saved = dict(os.environ)

        def run() -> int:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                return main(list(args))

        os.environ.clear()
        os.environ.update(self.env)
        try:
            code = await asyncio.to_thread(run)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return Result(code, out.getvalue(), err.getvalue())

    async def process(self, *args: str, timeout: float = 120) -> Result:
        """Run the console script itself, a process of its own."""
        process = await asyncio.create_subprocess_exec(
            str(ADMIN),
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def suite(
    make_settings: Callable[..., Settings], run_id: str, request: pytest.FixtureRequest
) -> AsyncIterator[Suite]:
    os.environ["LOYALTY_POINTS_JOB_INTERVAL_SECONDS"] = "3600"
    os.environ["LOYALTY_TIERS_JOB_INTERVAL_SECONDS"] = "3600"
    from loyalty_benefits.app import SPEC as BENEFITS
    from loyalty_engagement.app import SPEC as ENGAGEMENT
    from loyalty_gateway.app import SPEC as GATEWAY
    from loyalty_identity.app import SPEC as IDENTITY
    from loyalty_points.app import SPEC as POINTS
    from loyalty_tiers.app import SPEC as TIERS

    tag = getattr(request.module, "SUITE_TAG", "adm")
    settings = make_settings(database_prefix=f"{run_id}_{tag}_", event_namespace=f"{run_id}{tag}")
    runner = ServiceRunner(settings)
    try:
        identity = await runner.start(IDENTITY)
        with_identity = settings.model_copy(update={"identity_target": identity.target})
        points = await runner.start(POINTS, with_identity)
        tiers = await runner.start(TIERS)
        benefits = await runner.start(
            BENEFITS, with_identity.model_copy(update={"points_target": points.target})
        )
        targets = {
            "identity_target": identity.target,
            "points_target": points.target,
            "tiers_target": tiers.target,
            "benefits_target": benefits.target,
        }
        engagement = await runner.start(
            ENGAGEMENT,
            with_identity.model_copy(
                update={"points_target": points.target, "benefits_target": benefits.target}
            ),
        )
        gateway = await runner.start(GATEWAY, settings.model_copy(update=targets))
        targets["engagement_target"] = engagement.target
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
        env.update(
            {
                "LOYALTY_DATA_DIR": str(settings.data_dir),
                "LOYALTY_AUTH_DEV_KEYS": "true",
                "LOYALTY_DATABASE_URL": settings.database_url,
                "LOYALTY_DATABASE_PREFIX": settings.database_prefix,
                "LOYALTY_LOG_FORMAT": "console",
                **{f"LOYALTY_{key.upper()}": value for key, value in targets.items()},
            }
        )
        yield Suite(
            env,
            {
                "identity": identity,
                "points": points,
                "tiers": tiers,
                "benefits": benefits,
                "engagement": engagement,
                "gateway": gateway,
            },
        )
    finally:
        await runner.stop_all()
