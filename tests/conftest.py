"""Tests at the seams run against real PostgreSQL and NATS JetStream: embedded servers by
default, the ones named by LOYALTY_DATABASE_URL / LOYALTY_NATS_URL when set (see
loyalty_devstack.testing). The servers start the first time a test needs them, so the fast
use-case tests (`tests/*/unit`, on fake units of work) start none.
"""

pytest_plugins = ["loyalty_devstack.testing"]

import os  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402

import hypothesis  # noqa: E402
import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402
from loyalty_devstack.testing import ServiceRunner  # noqa: E402
from loyalty_kit.server import RunningService, ServiceSpec  # noqa: E402
from loyalty_kit.settings import Settings  # noqa: E402

from tests.support.clock import Clock  # noqa: E402

# Benefits' fixed welcome gift stays on in the tests (off by default since journeys grant it):
# the suite's welcome tests run on it, and tests/engagement/test_welcome_gift.py runs it beside
# the journey, as a rolling upgrade does. Every service this run starts inherits it.
os.environ.setdefault("LOYALTY_BENEFITS_FIXED_WELCOME_GIFTS", "true")
# Its fixed birthday gifts too (off by default: engagement's birthday journey grants them): the
# benefits tests run RunBirthdayGifts and `loyalty-admin jobs run birthday-gifts`.
os.environ.setdefault("LOYALTY_BENEFITS_FIXED_BIRTHDAY_GIFTS", "true")

# Identity's WeChat sign-in through the development fake (the code dev-<openid>), as under
# `make run`; the real exchange is tested against a local server (tests/identity).
os.environ.setdefault("LOYALTY_IDENTITY_WECHAT_MODE", "development")

# The session's gateway serves plain http on 127.0.0.1: the console's cookies without Secure
# (tests/console drives it in Chromium; production keeps Secure, __Host- cookies).
os.environ.setdefault("LOYALTY_GATEWAY_CONSOLE_INSECURE_COOKIES", "true")
# Every browser test signs in from 127.0.0.1: the per-address limit of sign-ins (30 a minute)
# would refuse a busy session's; the limit itself is tested without a server.
os.environ.setdefault("LOYALTY_GATEWAY_CONSOLE_SIGN_IN_ATTEMPTS_PER_MINUTE", "10000")

# Property tests check what holds, not how fast: no per-example deadline (on a loaded machine an
# example's first run, compiling a regular expression or a plan, passed hypothesis' 200 ms).
hypothesis.settings.register_profile("loyalty", deadline=None)
hypothesis.settings.load_profile("loyalty")


@pytest.fixture(scope="session")
def engagement_port() -> int:
    """The port the session's engagement service will listen on, chosen before identity starts:
    engagement needs identity, and identity sends members' sign-in and erasure codes through
    engagement, so identity is told where engagement will be before it is there."""
    from loyalty_devstack.embedded import free_port

    return free_port()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def identity_service(
    settings: Settings, engagement_port: int
) -> AsyncIterator[RunningService]:
    """The identity service of this test run, started once, on a free port; its codes go to the
    session's engagement service (the development sink, read back by tests), once that runs.
    Its import workers start at once on the imports uploaded to it and look for others only at
    start, so tests decide which replica carries an import uploaded elsewhere on."""
    import os

    os.environ["LOYALTY_IDENTITY_IMPORT_POLL_SECONDS"] = "3600"
    runner = ServiceRunner(settings)
    identity_settings = settings.model_copy(
        update={"engagement_target": f"127.0.0.1:{engagement_port}"}
    )
    yield await runner.start(_identity_spec(), identity_settings)
    await runner.stop_all()


@pytest.fixture(scope="session")
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def points_service(
    settings: Settings, identity_service: RunningService, clock: Clock
) -> AsyncIterator[RunningService]:
    """The points service, finding identity on its test port; the session's clock injected.
    Its scheduled jobs are slowed down so tests drive them through RunExpiry and friends."""
    import os

    from loyalty_points.app import SPEC

    os.environ["LOYALTY_POINTS_JOB_INTERVAL_SECONDS"] = "3600"
    runner = ServiceRunner(settings)
    points_settings = settings.model_copy(update={"identity_target": identity_service.target})
    yield await runner.start(SPEC, points_settings, clock=clock)
    await runner.stop_all()


def _identity_spec() -> ServiceSpec:
    from loyalty_identity.app import SPEC

    return SPEC


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def tiers_service(settings: Settings, clock: Clock) -> AsyncIterator[RunningService]:
    """The tiers service, learning activity from the points service's events."""
    import os

    from loyalty_tiers.app import SPEC

    os.environ["LOYALTY_TIERS_JOB_INTERVAL_SECONDS"] = "3600"  # tests drive RunYearEnd
    # Imported orders' upgrades judged within moments, not the seconds an import waits.
    os.environ["LOYALTY_TIERS_UPGRADE_INTERVAL_SECONDS"] = "0.2"
    os.environ["LOYALTY_TIERS_UPGRADE_SETTLE_SECONDS"] = "0.2"
    runner = ServiceRunner(settings)
    yield await runner.start(SPEC, settings, clock=clock)
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def benefits_service(
    settings: Settings,
    identity_service: RunningService,
    points_service: RunningService,
    insights_service: RunningService,
    clock: Clock,
) -> AsyncIterator[RunningService]:
    """The benefits service, learning tiers from TierChanged, debiting points for rewards at
    the points service and reading segments from the identity and insights services of this
    run; the
    session's clock injected. It looks for coupon issuances left running only at start (and
    runs the ones it creates at once), so tests decide which replica carries one on."""
    import os

    from loyalty_benefits.app import SPEC

    os.environ["LOYALTY_BENEFITS_ISSUANCE_INTERVAL_SECONDS"] = "3600"
    runner = ServiceRunner(settings)
    benefits_settings = settings.model_copy(
        update={
            "points_target": points_service.target,
            "identity_target": identity_service.target,
            "insights_target": insights_service.target,
        }
    )
    yield await runner.start(SPEC, benefits_settings, clock=clock)
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def insights_service(settings: Settings, clock: Clock) -> AsyncIterator[RunningService]:
    """The insights service, keeping facts of every service's events of this run."""
    from loyalty_insights.app import SPEC

    runner = ServiceRunner(settings)
    yield await runner.start(SPEC, settings, clock=clock)
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def engagement_service(
    settings: Settings,
    identity_service: RunningService,
    points_service: RunningService,
    benefits_service: RunningService,
    clock: Clock,
    engagement_port: int,
) -> AsyncIterator[RunningService]:
    """The engagement service, entering members into journeys on this run's events and acting
    through this run's benefits, points and identity services; its timer every second. It
    listens where the session's identity was told it would (`engagement_port`)."""
    import os

    from loyalty_engagement.app import SPEC

    os.environ["LOYALTY_ENGAGEMENT_TIMER_INTERVAL_SECONDS"] = "1"
    # Webhook deliveries looked for often and retried soon, given up after 4 attempts.
    os.environ["LOYALTY_ENGAGEMENT_WEBHOOK_INTERVAL_SECONDS"] = "0.05"
    os.environ["LOYALTY_ENGAGEMENT_WEBHOOK_BACKOFF_SECONDS"] = "0.05"
    os.environ["LOYALTY_ENGAGEMENT_WEBHOOK_MAX_ATTEMPTS"] = "4"
    os.environ["LOYALTY_ENGAGEMENT_WEBHOOK_TIMEOUT_SECONDS"] = "2"
    runner = ServiceRunner(settings)
    engagement_settings = settings.model_copy(
        update={
            "identity_target": identity_service.target,
            "points_target": points_service.target,
            "benefits_target": benefits_service.target,
        }
    )
    yield await runner.start_on(engagement_port, SPEC, engagement_settings, clock=clock)
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def gateway_service(
    settings: Settings,
    identity_service: RunningService,
    points_service: RunningService,
    tiers_service: RunningService,
    benefits_service: RunningService,
    insights_service: RunningService,
    engagement_service: RunningService,
) -> AsyncIterator[RunningService]:
    """The gateway in front of this run's services, started once for the whole session (it
    binds the session's HTTP port: a second one, from a fixture imported into another
    conftest, could not)."""
    import asyncio

    import httpx
    from loyalty_gateway.app import SPEC

    runner = ServiceRunner(settings)
    gateway_settings = settings.model_copy(
        update={
            "identity_target": identity_service.target,
            "points_target": points_service.target,
            "tiers_target": tiers_service.target,
            "benefits_target": benefits_service.target,
            "insights_target": insights_service.target,
            "engagement_target": engagement_service.target,
        }
    )
    service = await runner.start(SPEC, gateway_settings)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.gateway_http_port}")
    for _ in range(100):  # uvicorn starts beside the gRPC server
        try:
            await http.get("/openapi.json")
            break
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    await http.aclose()
    yield service
    await runner.stop_all()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast tests (`tests/<service>/unit`) stay fast: none may need a server. Every test
    that drives Chromium (the `browser` fixture: tests/console, tests/me) is marked `browser`,
    so a run may leave them out (`-m "not browser"`: CI's real-server pass, .ci/run)."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
    needing = [
        item.nodeid
        for item in items
        if "/unit/" in item.nodeid and "infra" in getattr(item, "fixturenames", ())
    ]
    if needing:
        raise pytest.UsageError(
            "fast tests must not need PostgreSQL or NATS (the `infra` fixture): "
            + ", ".join(needing)
        )
