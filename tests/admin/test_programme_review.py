"""The programme review as the console uses it, against a suite of the services of its own: the
caller's channels and credentials, a review applied as the operator (the services record the
change under the operator's client), a stale review refused with nothing changed, and an
operator the services refuse reported in the outcome."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import grpc
import pytest
import pytest_asyncio
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_admin.live import CHANNELS, Services, calling
from loyalty_admin.review import Stale, apply, review_live
from loyalty_devstack.demo import HUAYUE
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from sqlalchemy.engine import make_url

from tests.admin.conftest import Suite

SUITE_TAG = "rev"


def _ladder(*edits: tuple[str, str]) -> str:
    """The Huayue file's ladder alone (a file of one section), edited."""
    text = HUAYUE.read_text()
    text = "tiers:\n" + text.split("\ntiers:\n", 1)[1].split("\nbenefits:\n", 1)[0] + "\n"
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _operator(scopes: frozenset[str] = frozenset({"admin"})) -> Caller:
    return Caller(unit="group", client_id=f"console-{uuid.uuid4().hex[:10]}", scopes=scopes)


@pytest_asyncio.fixture(loop_scope="session")
async def channels(suite: Suite) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    opened = {name: grpc.aio.insecure_channel(suite.services[name].target) for name in CHANNELS}
    try:
        yield opened
    finally:
        for channel in opened.values():
            await channel.close()


async def _gold(channels: dict[str, grpc.aio.Channel]) -> Decimal:
    found = await tiers_service_pb2_grpc.TiersServiceStub(channels["tiers"]).GetLadder(
        tiers_pb.GetLadderRequest(), metadata=metadata_for(_operator())
    )
    (gold,) = [t for t in found.ladder.tiers if t.code == "gold"]
    return Decimal(gold.thresholds[0].value)


async def _scopes_recorded(suite: Suite, client_id: str) -> list[str]:
    """The tiers service's idempotency records of `client_id` (a record's scope names the
    method and the client that called it)."""
    settings = suite.services["tiers"].context.settings
    url = make_url(str(settings.service_database_url("tiers")))
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        rows = await conn.fetch(
            "SELECT scope FROM kit_idempotency_keys WHERE scope LIKE $1", f"%:{client_id}"
        )
    finally:
        await conn.close()
    return [row["scope"] for row in rows]


async def _ensure_ladder(services: Services) -> None:
    """The Huayue ladder in force (the suite's first test to run publishes it)."""
    found = await review_live(_ladder(), services)
    assert found.ok, (found.problems, found.refused)
    if found.changed:
        outcome = await apply(found, found.digest, services, reason="the demo ladder")
        assert outcome.ok, outcome.failure


async def test_a_review_applied_as_the_operator_is_recorded_as_the_operators(
    suite: Suite, channels: dict[str, grpc.aio.Channel]
) -> None:
    operator = _operator()
    services = calling(channels, metadata_for(operator))
    await _ensure_ladder(services)
    wanted = f"{20000 + uuid.uuid4().int % 5000}"
    found = await review_live(
        _ladder(('      value: "20000"', f'      value: "{wanted}"')), services
    )
    assert found.ok and found.changed
    (tiers,) = found.sections
    assert [c.path for c in tiers.changes] == [
        "tiers[gold].thresholds[METRIC_QUALIFYING_SPEND].value"
    ]
    outcome = await apply(found, found.digest, services, reason="gold threshold")
    assert outcome.ok and list(outcome.done) == ["tiers"], outcome.failure
    assert await _gold(channels) == Decimal(wanted)
    recorded = await _scopes_recorded(suite, operator.client_id)
    assert recorded and all("UpdateLadder" in scope for scope in recorded)
    # Reviewed again: nothing left to do.
    again = await review_live(
        _ladder(('      value: "20000"', f'      value: "{wanted}"')), services
    )
    assert again.ok and not again.changed


async def test_a_review_made_stale_by_another_change_is_refused_and_changes_nothing(
    suite: Suite, channels: dict[str, grpc.aio.Channel]
) -> None:
    services = calling(channels, metadata_for(_operator()))
    await _ensure_ladder(services)
    ours = _ladder(('      value: "20000"', '      value: "31000"'))
    found = await review_live(ours, services)
    assert found.ok and found.changed
    # Someone else publishes another ladder meanwhile.
    other = calling(channels, metadata_for(_operator()))
    theirs = await review_live(_ladder(('      value: "20000"', '      value: "32000"')), other)
    assert (await apply(theirs, theirs.digest, other)).ok
    with pytest.raises(Stale):
        await apply(found, found.digest, services)
    assert await _gold(channels) == 32000
    # A confirmation carrying another digest is refused too.
    fresh = await review_live(ours, services)
    with pytest.raises(Stale):
        await apply(fresh, found.digest, services)
    assert await _gold(channels) == 32000
    # Reviewed again, it applies.
    assert (await apply(fresh, fresh.digest, services)).ok
    assert await _gold(channels) == 31000


async def test_an_operator_the_services_refuse_changes_nothing(
    suite: Suite, channels: dict[str, grpc.aio.Channel]
) -> None:
    admin = calling(channels, metadata_for(_operator()))
    await _ensure_ladder(admin)
    clerk = _operator(frozenset({"earn"}))
    services = calling(channels, metadata_for(clerk))
    before = await _gold(channels)
    found = await review_live(_ladder(('      value: "20000"', '      value: "33000"')), services)
    assert found.ok and found.changed
    outcome = await apply(found, found.digest, services)
    assert not outcome.ok and outcome.failed == "tiers"
    assert outcome.failure.startswith("PERMISSION_DENIED"), outcome.failure
    assert await _gold(channels) == before
