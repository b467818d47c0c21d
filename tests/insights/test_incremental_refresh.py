"""The incremental refresh: after a history of purchases, a refund, a merge and an erasure, and
time moved on (facts leaving the trailing 12 months, members' first activity leaving it, recency
moving), refreshing from the rows leaves every row of `member_figures` and every stored count
exactly as a refresh from the facts as of the same moment; a recompute that commits while it
runs is kept; RefreshFigures says which kind it was and does the one asked for."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_insights.adapters.facts import ActivityFact
from loyalty_insights.adapters.member_figures import COLUMNS
from loyalty_insights.domain.crossunit import REFUND
from loyalty_insights.service_layer.refresh import (
    RefreshReport,
    recompute,
    refresh_figures,
    settle_refresh,
)
from loyalty_insights.service_layer.uow import InsightsUnitOfWork
from loyalty_kit.server import RunningService
from sqlalchemy import text

from tests.insights.conftest import Member, Suite, caught_up, until
from tests.insights.test_member_figures import buy, row_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Everything a refresh computes; `window_end` says which window a row was last written for
# (rows an incremental refresh found unchanged keep theirs), so it is left out.
FIGURES = [c for c in COLUMNS if c != "window_end"]

_STATE = (
    f"SELECT member_id, {', '.join(FIGURES)} FROM member_figures ORDER BY member_id",
    "SELECT figure, key, sum(members) AS n FROM figure_counts GROUP BY 1, 2 "
    "HAVING sum(members) <> 0 ORDER BY 1, 2",
    "SELECT unit, sum(spend) AS spend, sum(members) AS n FROM spend_counts GROUP BY 1 "
    "HAVING sum(spend) <> 0 OR sum(members) <> 0 ORDER BY 1",
    "SELECT from_unit, to_unit, sum(members) AS n FROM flow_counts GROUP BY 1, 2 "
    "HAVING sum(members) <> 0 ORDER BY 1, 2",
)


async def state(service: RunningService) -> list[list[dict[str, Any]]]:
    """Every row's figures and every stored count, in one snapshot."""
    async with service.context.database() as session:
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        return [[dict(r) for r in (await session.execute(text(q))).mappings()] for q in _STATE]


def uows(service: RunningService) -> Callable[[], InsightsUnitOfWork]:
    context = service.context

    def uow() -> InsightsUnitOfWork:
        return InsightsUnitOfWork(context.database, context.settings.event_namespace)

    return uow


async def refreshed(
    service: RunningService, now: Callable[[], datetime], full: bool = False
) -> RefreshReport:
    uow = uows(service)
    async with uow() as work:
        report = await refresh_figures(work, now, full)
        await work.commit()
    await settle_refresh(uow, now)
    return report


async def refund(
    service: RunningService, member: Member, unit: str, when: datetime, now: datetime
) -> None:
    """A refund's fact and its recompute, as the consumer records them."""
    async with uows(service)() as event:
        conn = await event.member_figures._conn()
        currency = await conn.fetchval(
            "SELECT currency FROM activity WHERE member_id = $1 LIMIT 1", member.id
        )
        await event.facts.record_activity(
            [ActivityFact(member.id, REFUND, uuid.uuid4().hex, unit, when, Decimal(-5), currency)]
        )
        await recompute(event, [member.id], now)
        await event.commit()


async def test_an_incremental_refresh_leaves_what_a_refresh_from_the_facts_does(
    suite: Suite, insights_service: RunningService
) -> None:
    await caught_up(insights_service)
    await refreshed(insights_service, suite.clock, full=True)
    leaving, lapsing, refunded, survivor, absorbed, erased, newcomer = [
        await suite.member(u) for u in ("mall", "hotel", "mall", "mall", "cinema", "hotel", "mall")
    ]
    await buy(suite, leaving, "mall", "80.00", 363)  # leaves the window when it moves 5 days
    await buy(suite, leaving, "hotel", "20.00", 100)
    await buy(suite, lapsing, "hotel", "999.00", 364)  # its only purchase in the window
    await buy(suite, refunded, "mall", "45.00", 10)
    await buy(suite, survivor, "mall", "30.00", 30)
    await buy(suite, absorbed, "cinema", "60.00", 362)
    await buy(suite, erased, "hotel", "500.00", 50)  # still ranked once erased (its facts stay)
    await buy(suite, newcomer, "cinema", "15.00", 361)  # first active: leaves `new_12m`
    await buy(suite, newcomer, "mall", "15.00", 1)
    await until(
        lambda: row_of(insights_service, newcomer.id),
        lambda r: r is not None and r["visits_12m"] == 2,
    )
    await until(lambda: row_of(insights_service, refunded.id), lambda r: r is not None)
    await refund(
        insights_service, refunded, "mall", suite.clock() - timedelta(days=4), suite.clock()
    )
    await suite.identity().MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=survivor.name, absorbed=absorbed.name, request_id=uuid.uuid4().hex
        )
    )
    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=erased.name, request_id=uuid.uuid4().hex)
    )
    await until(lambda: row_of(insights_service, absorbed.id), lambda r: r is None)
    await until(lambda: row_of(insights_service, erased.id), lambda r: r is None)
    await caught_up(insights_service)
    await refreshed(insights_service, suite.clock)  # incremental, before time moves

    suite.clock.advance(days=5, hours=7)
    try:
        await buy(suite, refunded, "hotel", "12.00", 0.5)  # an event after time moved
        await until(
            lambda: row_of(insights_service, refunded.id),
            lambda r: r is not None and r["visits_12m"] == 2,
        )
        await caught_up(insights_service)
        moment = suite.clock()
        before = await row_of(insights_service, leaving.id)
        assert before is not None and before["visits_12m"] == 2  # as last refreshed

        report = await refreshed(insights_service, lambda: moment)
        assert not report.full
        incremental = await state(insights_service)
        again = await refreshed(insights_service, lambda: moment, full=True)
        assert again.full
        assert incremental == await state(insights_service)
    finally:
        suite.clock.advance(days=-5, hours=-7)

    # What moved, as the refresh from the facts has it too.
    left, lapsed, grown = [
        await row_of(insights_service, m.id) for m in (leaving, lapsing, newcomer)
    ]
    assert left is not None and (left["visits_12m"], left["units_12m"]) == (1, ["hotel"])
    assert lapsed is not None and (lapsed["visits_12m"], lapsed["recency_days"]) == (0, None)
    assert lapsed["rfm_r"] == 1
    assert grown is not None and grown["new_12m"] is False
    assert await row_of(insights_service, erased.id) is None


async def test_an_incremental_refresh_keeps_a_recompute_that_commits_while_it_runs(
    suite: Suite, insights_service: RunningService
) -> None:
    member = await suite.member("mall")
    await buy(suite, member, "mall", "70.00", 364)  # leaves the window a few days on
    await buy(suite, member, "hotel", "10.00", 20)
    await until(
        lambda: row_of(insights_service, member.id),
        lambda r: r is not None and r["visits_12m"] == 2,
    )
    await caught_up(insights_service)
    await refreshed(insights_service, suite.clock, full=True)
    moment = suite.clock() + timedelta(days=3)

    async def purchase() -> None:
        """A purchase arrives and is recomputed after the refresh took its moment."""
        async with uows(insights_service)() as event:
            conn = await event.member_figures._conn()
            currency = await conn.fetchval(
                "SELECT currency FROM activity WHERE member_id = $1 LIMIT 1", member.id
            )
            await event.facts.record_activity(
                [
                    ActivityFact(
                        member.id,
                        "purchase",
                        uuid.uuid4().hex,
                        "cinema",
                        moment - timedelta(hours=1),
                        Decimal(5),
                        currency,
                    )
                ]
            )
            await recompute(event, [member.id], moment)
            await event.commit()

    uow = uows(insights_service)
    async with uow() as work:
        take_moment = work.member_figures.since

        async def moment_then_purchase() -> datetime:
            """The purchase commits between the refresh's moment and its reading the rows."""
            taken = await take_moment()
            await purchase()
            return taken

        work.member_figures.since = moment_then_purchase  # type: ignore[method-assign]
        report = await refresh_figures(work, lambda: moment)
        await work.commit()
    assert not report.full
    refresh_id = await last_refresh_id(insights_service)
    row = await row_of(insights_service, member.id)
    # The recompute's row stands: the mall purchase gone with the window, the cinema's counted.
    assert row is not None and (row["visits_12m"], row["units_12m"]) == (2, ["cinema", "hotel"])
    assert row["scored_by"] != refresh_id  # scored against the cut points before the refresh
    assert await settle_refresh(uow, lambda: moment) >= 1
    settled = await row_of(insights_service, member.id)
    assert settled is not None and (settled["visits_12m"], settled["units_12m"]) == (
        2,
        ["cinema", "hotel"],
    )
    assert settled["scored_by"] == refresh_id


async def last_refresh_id(service: RunningService) -> int:
    async with service.context.database() as session:
        return int(
            (await session.execute(text("SELECT max(id) FROM figure_refreshes"))).scalar_one()
        )


async def test_refresh_figures_refreshes_incrementally_unless_asked_for_the_repair(
    suite: Suite, insights_service: RunningService
) -> None:
    member = await suite.member("mall")
    await buy(suite, member, "mall", "25.00", 2)
    await until(
        lambda: row_of(insights_service, member.id),
        lambda r: r is not None and r["visits_12m"] == 1,
    )
    insights = suite.insights()
    full = await insights.RefreshFigures(
        pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex, full=True)
    )
    assert full.full and full.written == full.members
    incremental = await insights.RefreshFigures(
        pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex)
    )
    assert not incremental.full and incremental.members == full.members
    row = await row_of(insights_service, member.id)
    assert row is not None and (row["visits_12m"], row["recency_days"]) == (1, 2)


async def test_an_incremental_refresh_figures_a_row_no_recompute_ever_figured(
    suite: Suite, insights_service: RunningService
) -> None:
    await caught_up(insights_service)
    await refreshed(insights_service, suite.clock, full=True)
    member_id = f"unfigured-{uuid.uuid4().hex[:8]}"
    moment = suite.clock()
    async with uows(insights_service)() as work:
        # Its tags made its row; its purchase's fact came without a recompute (a repair's case).
        await work.facts.record_tags(member_id, ["vip"])
        await work.facts.record_activity(
            [
                ActivityFact(
                    member_id,
                    "purchase",
                    uuid.uuid4().hex,
                    "mall",
                    moment - timedelta(days=30),
                    Decimal(40),
                    "",
                )
            ]
        )
        await work.commit()
    report = await refreshed(insights_service, lambda: moment)
    assert not report.full
    row = await row_of(insights_service, member_id)
    assert row is not None and (row["visits_12m"], row["units_12m"], row["tags"]) == (
        1,
        ["mall"],
        ["vip"],
    )
    assert row["figured_at"] is not None
