from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from loyalty_kit import db, events, migrations
from loyalty_kit.settings import Settings
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

_numbers = itertools.count()


@pytest.fixture(autouse=True)
def _headers_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kit's own tests start bare test services and call them without tokens: they test
    the machinery, not credentials (test_auth covers those, and every service test runs with
    caller headers untrusted)."""
    monkeypatch.setenv("LOYALTY_AUTH_TRUST_HEADERS", "true")


KIT_MIGRATIONS = "loyalty_points:migrations"  # its first revision is the kit's tables


@pytest_asyncio.fixture(loop_scope="session")
async def kit_db(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A fresh database of this run with the kit's tables, for one test."""
    name = f"kit{next(_numbers)}"
    await db.ensure_database(settings.server_url, settings.database_for(name))
    engine = db.create_engine(settings.service_database_url(name), pool_size=25)
    await migrations.upgrade(engine, KIT_MIGRATIONS)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def js(settings: Settings) -> AsyncIterator[JetStreamContext]:
    client: NATS = await events.connect(settings.nats_url, "kit-tests")
    try:
        yield client.jetstream()
    finally:
        await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def stream_service(settings: Settings, js: JetStreamContext) -> AsyncIterator[str]:
    """A service name whose stream is fresh for one test (subjects <ns>.<name>.v1.>)."""
    name = f"svc{next(_numbers)}"
    await events.ensure_stream(js, settings.event_namespace, name)
    yield name
    await js.delete_stream(events.stream_name(settings.event_namespace, name))
