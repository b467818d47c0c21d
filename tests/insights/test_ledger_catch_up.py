"""A read side that starts after the ledger catches up: the points service publishes the
ledger as it stands again (RepublishLedger, an admin job walked by page token), and insights'
facts of a member whose facts were lost come back exactly as the member's own events made
them, however often the walk is repeated."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.settings import Settings
from sqlalchemy.engine import make_url

from tests.insights.conftest import Suite, until
from tests.points.conftest import ADMIN
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

POSTINGS = (
    "SELECT posting_id, kind, unit, points, posted_at, occurred_at FROM ledger_postings "
    "WHERE member_id = $1 ORDER BY posting_id"
)
MOVEMENTS = (
    "SELECT posting_id, lot_id, kind, posting_points, earned_unit, unit, points, posted_at, "
    "expires_at FROM lot_movements WHERE member_id = $1 ORDER BY posting_id, lot_id"
)


async def facts_of(settings: Settings, member_id: str) -> tuple[list[Any], list[Any]]:
    url = make_url(str(settings.service_database_url("insights")))
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        return (
            [tuple(r) for r in await conn.fetch(POSTINGS, member_id)],
            [tuple(r) for r in await conn.fetch(MOVEMENTS, member_id)],
        )
    finally:
        await conn.close()


async def lose_facts_of(settings: Settings, member_id: str) -> None:
    url = make_url(str(settings.service_database_url("insights")))
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        await conn.execute("DELETE FROM lot_movements WHERE member_id = $1", member_id)
        await conn.execute("DELETE FROM ledger_postings WHERE member_id = $1", member_id)
    finally:
        await conn.close()


async def test_a_member_s_lost_ledger_facts_come_back_exactly(suite: Suite) -> None:
    points, settings = suite.points, suite.points.service.context.settings
    shopper = await suite.member()
    await points.earn(shopper.name, "mall", "300.00")
    await points.earn(shopper.name, "cinema", "120.00")
    await points.as_().RedeemPoints(
        pb.RedeemPointsRequest(
            member=shopper.name, request_id=uuid.uuid4().hex, unit="mall", points=50
        )
    )
    kept = await until(lambda: facts_of(settings, shopper.id), lambda f: len(f[0]) == 3)
    assert len(kept[0]) == 3 and len(kept[1]) >= 3  # two earns' lots, the redemption's take

    await lose_facts_of(settings, shopper.id)
    admin = points.as_(ADMIN)
    due = await admin.RepublishLedger(pb.RepublishLedgerRequest(validate_only=True))
    assert due.remaining >= 1 and due.members_published == 0

    async def walk() -> int:
        """The whole ledger, a step of 200 members at a time; the steps taken."""
        token, steps, published = "", 0, 0
        while True:
            answer = await admin.RepublishLedger(
                pb.RepublishLedgerRequest(page_token=token, max_members=200, chunk_size=100)
            )
            steps += 1
            published += answer.members_published
            assert answer.members_published <= 200
            token = answer.next_page_token
            if not token:
                assert answer.remaining == 0
                assert published >= 1
                return steps

    assert await walk() >= 1
    back = await until(lambda: facts_of(settings, shopper.id), lambda f: f == kept)
    assert back == kept
    await walk()  # again: nothing doubles
    assert await facts_of(settings, shopper.id) == kept


async def test_republishing_is_the_admin_s_and_refuses_bad_input(suite: Suite) -> None:
    admin, till = suite.points.as_(ADMIN), suite.points.as_()
    refused = await fails(till.RepublishLedger(pb.RepublishLedgerRequest(validate_only=True)))
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    reader = Caller(unit="mall", client_id="mall-ops", scopes=frozenset({"points:read"}))
    refused = await fails(
        suite.points.as_(reader).RepublishLedger(pb.RepublishLedgerRequest(validate_only=True))
    )
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    for request, field in (
        (pb.RepublishLedgerRequest(page_token="not-a-token"), "page_token"),
        (pb.RepublishLedgerRequest(max_members=-1), "max_members"),
        (pb.RepublishLedgerRequest(chunk_size=-5), "chunk_size"),
    ):
        failed = await fails(admin.RepublishLedger(request))
        assert failed.code == grpc.StatusCode.INVALID_ARGUMENT
        assert field in failed.fields
