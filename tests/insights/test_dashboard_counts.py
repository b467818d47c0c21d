"""The dashboards' stored counts (`figure_counts`): kept in the transaction of every write to the
members' figures, they equal the counts of the rows after purchases, a merge, an erasure and a
full refresh; the standard window's answers (no period) move by what the known history says and
agree with the figures computed from the facts over the same 12 months; explicit periods stay
computed from the facts."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_insights.adapters.facts import ActivityFact
from loyalty_insights.adapters.figures import OWNERS
from loyalty_insights.domain.crossunit import ACTIVE
from loyalty_insights.domain.figures import year_before
from loyalty_insights.service_layer.refresh import recompute
from loyalty_insights.service_layer.uow import InsightsUnitOfWork
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import moment_of
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.insights import test_flows, test_spend_share
from tests.insights.conftest import Member, Suite, period, until
from tests.insights.test_member_figures import refresh, row_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The stored counts against the rows' own counts, in one statement (one snapshot): the keys
# where they differ.
_DIFFERENCES = """
WITH stored AS (
    SELECT figure, key, sum(members) AS members FROM figure_counts
    GROUP BY figure, key HAVING sum(members) <> 0
), counted AS (
    SELECT k.figure, k.key, count(*) AS members
    FROM member_figures m, figure_keys(m.rfm_segment, m.units_12m) k GROUP BY 1, 2
)
SELECT coalesce(s.figure, c.figure) AS figure, coalesce(s.key, c.key) AS key,
       s.members AS stored, c.members AS counted
FROM stored s FULL JOIN counted c ON c.figure = s.figure AND c.key = s.key
WHERE s.members IS DISTINCT FROM c.members
"""


async def differences(service: RunningService) -> list[dict[str, Any]]:
    async with service.context.database() as session:
        rows = (await session.execute(text(_DIFFERENCES))).mappings().all()
        return [dict(r) for r in rows]


Figures = tuple[tuple[int, int], tuple[int, int], Counter[tuple[str, str]]]


async def standard(suite: Suite) -> Figures:
    """The standard window's multi-unit figure (active, multi), the mall's, and the overlap."""
    insights = suite.insights()
    multi = await insights.GetMultiUnitMembers(pb.GetMultiUnitMembersRequest())
    mall = await insights.GetMultiUnitMembers(pb.GetMultiUnitMembersRequest(unit="mall"))
    overlap = await insights.GetUnitOverlap(pb.GetUnitOverlapRequest())
    assert list(multi.months) == [] and list(mall.months) == []  # the whole window only
    pairs = Counter({(p.unit, p.other_unit): p.members for p in overlap.pairs})
    return (
        (multi.period.active_members, multi.period.multi_unit_members),
        (mall.period.active_members, mall.period.multi_unit_members),
        pairs,
    )


async def buy(suite: Suite, member: Member, unit: str, days_ago: float) -> None:
    when = suite.clock() - timedelta(days=days_ago)
    await suite.points.earn(member.name, unit, "25.00", occur=when.isoformat())


async def others(service: RunningService, mine: list[Member]) -> Figures:
    """What the rows of every member but `mine` count (other tests' members move too)."""
    async with service.context.database() as session:
        rows = await session.execute(
            text(
                "SELECT k.figure, k.key, count(*) FROM member_figures m, "
                "figure_keys(m.rfm_segment, m.units_12m) k "
                "WHERE NOT m.member_id = ANY(:mine) AND k.figure <> 'segment' GROUP BY 1, 2"
            ),
            {"mine": [m.id for m in mine]},
        )
        found = {(f, k): int(n) for f, k, n in rows.all()}
    pairs = Counter(
        {tuple(k.split(" ")): n for (f, k), n in found.items() if f == "pair"}  # type: ignore[misc]
    )
    return (
        (found.get(("active", ""), 0), found.get(("multi", ""), 0)),
        (found.get(("pair", "mall mall"), 0), found.get(("multi", "mall"), 0)),
        pairs,
    )


async def test_stored_counts_follow_events_a_merge_an_erasure_and_a_refresh(
    suite: Suite, insights_service: RunningService
) -> None:
    await refresh(suite)
    assert await differences(insights_service) == []

    # Known history: a buys at the mall and the hotel, b at the mall, c at the cinema.
    a, b, c = [await suite.member(u) for u in ("mall", "mall", "cinema")]
    mine = [a, b, c]

    async def expect(
        active: int, multi: int, mall: tuple[int, int], pairs: dict[tuple[str, str], int]
    ) -> None:
        """The standard answers are the other members' counts and mine, as known."""

        async def both() -> tuple[Any, Any]:
            rest = await others(insights_service, mine)
            wanted = (
                (rest[0][0] + active, rest[0][1] + multi),
                (rest[1][0] + mall[0], rest[1][1] + mall[1]),
                rest[2] + Counter(pairs),
            )
            return await standard(suite), wanted

        found, wanted = await until(both, lambda f: f[0] == f[1])
        assert await differences(insights_service) == []
        assert found == wanted

    await buy(suite, a, "mall", 3)
    await buy(suite, a, "hotel", 2)
    await buy(suite, b, "mall", 5)
    await buy(suite, c, "cinema", 1)
    for member, units in ((a, ["hotel", "mall"]), (b, ["mall"]), (c, ["cinema"])):
        await until(
            lambda m=member: row_of(insights_service, m.id),  # type: ignore[misc]
            lambda r, u=units: r is not None and r["units_12m"] == u,  # type: ignore[misc]
        )
    a_pairs = {
        ("mall", "mall"): 1,
        ("hotel", "hotel"): 1,
        ("mall", "hotel"): 1,
        ("hotel", "mall"): 1,
    }
    await expect(3, 1, (2, 1), a_pairs | {("mall", "mall"): 2, ("cinema", "cinema"): 1})

    # c absorbs b: one member active at the mall and the cinema instead of two in one unit each.
    await suite.identity().MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=c.name, absorbed=b.name, request_id=uuid.uuid4().hex
        )
    )
    c_pairs = {
        ("mall", "mall"): 1,
        ("cinema", "cinema"): 1,
        ("mall", "cinema"): 1,
        ("cinema", "mall"): 1,
    }
    await expect(2, 2, (2, 2), dict(Counter(a_pairs) + Counter(c_pairs)))
    assert await row_of(insights_service, b.id) is None

    # a is erased: its row leaves the members' figures, and with it the stored counts.
    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=a.name, request_id=uuid.uuid4().hex)
    )
    await expect(1, 1, (1, 1), c_pairs)

    # A full refresh rewrites every row: the counts still equal the rows', and the answers the
    # same figures computed from the facts over the refresh's 12 months (erased members apart).
    done = await refresh(suite)
    await expect(1, 1, (1, 1), c_pairs)
    as_of = moment_of(done, "as_of")
    assert as_of is not None
    rfm = await suite.insights().GetRfm(pb.GetRfmRequest())
    async with insights_service.context.database() as session:
        rows = await session.execute(
            text(
                "SELECT rfm_segment, count(*) FROM member_figures "
                "WHERE rfm_segment IS NOT NULL GROUP BY 1"
            )
        )
        by_rows: dict[str, int] = {segment: int(n) for segment, n in rows.all()}
    assert {s.segment: s.members for s in rfm.segments if s.members} == by_rows

    on_demand = await suite.insights().GetUnitOverlap(
        pb.GetUnitOverlapRequest(**period(year_before(as_of), as_of))
    )
    # a was active in the mall and the hotel: the facts keep counting it, the rows do not.
    from_facts = Counter({(p.unit, p.other_unit): p.members for p in on_demand.pairs})
    erased = await erased_pairs(insights_service)
    assert from_facts - erased == (await standard(suite))[2]


async def erased_pairs(service: RunningService) -> Counter[tuple[str, str]]:
    """Pairs of units erased members (with no row) were active in over the 12 months of the
    last refresh, their absorbed members' activity theirs (what the facts count and the
    members' figures do not)."""
    async with service.context.database() as session:
        rows = await session.execute(
            text(
                OWNERS
                + """, last AS (SELECT as_of FROM figure_refreshes ORDER BY id DESC LIMIT 1),
                visited AS (
                    SELECT DISTINCT coalesce(o.owner, a.member_id) AS member_id, a.unit
                    FROM activity a CROSS JOIN last
                    LEFT JOIN owners o ON o.member_id = a.member_id
                    WHERE a.occurred_at >= last.as_of - interval '12 months'
                      AND a.occurred_at < last.as_of AND a.kind = ANY(:kinds)
                )
                SELECT v.unit, w.unit, count(*) FROM visited v
                JOIN visited w ON w.member_id = v.member_id
                WHERE v.member_id IN (SELECT member_id FROM erased_members)
                GROUP BY 1, 2
                """
            ),
            {"kinds": list(ACTIVE)},
        )
        return Counter({(u, o): int(n) for u, o, n in rows.all()})


async def test_explicit_periods_stay_computed_from_the_facts(
    suite: Suite, insights_service: RunningService
) -> None:
    await refresh(suite)
    member = await suite.member("hotel")
    await buy(suite, member, "hotel", 400)  # over a year ago: outside the standard window
    now = suite.clock()
    ask = period(now - timedelta(days=500), now)
    found = await until(
        lambda: suite.insights().GetUnitOverlap(pb.GetUnitOverlapRequest(**ask, unit="hotel")),
        lambda f: any(p.unit == p.other_unit == "hotel" for p in f.pairs),
    )
    older = {(p.unit, p.other_unit): p.members for p in found.pairs}
    window = await suite.insights().GetUnitOverlap(pb.GetUnitOverlapRequest(unit="hotel"))
    assert all(p.unit == "hotel" or p.other_unit == "hotel" for p in window.pairs)
    assert older[("hotel", "hotel")] >= 1


async def test_two_events_of_one_member_at_once_lose_neither_fact(
    suite: Suite, insights_service: RunningService
) -> None:
    member = await suite.member("mall")
    await until(lambda: row_of(insights_service, member.id), lambda r: r is not None)
    context = insights_service.context
    now = suite.clock()

    def uow() -> InsightsUnitOfWork:
        return InsightsUnitOfWork(context.database, context.settings.event_namespace)

    def purchase(unit: str) -> ActivityFact:
        return ActivityFact(
            member.id, "purchase", uuid.uuid4().hex, unit, now - timedelta(hours=1), Decimal(9), ""
        )

    async with uow() as first, uow() as second:
        await first.facts.record_activity([purchase("hotel")])
        await recompute(first, [member.id], now)
        # The second event's transaction does not see the first's purchase until it commits:
        # its recompute waits for the first's, then reads both.
        await second.facts.record_activity([purchase("cinema")])
        waiting = asyncio.create_task(recompute(second, [member.id], now))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await first.commit()
        await waiting
        await second.commit()
    row = await row_of(insights_service, member.id)
    assert row is not None and row["units_12m"] == ["cinema", "hotel"]
    assert await differences(insights_service) == []


async def test_an_update_of_many_rows_in_a_session_whose_first_wrote_one_counts_at_once(
    insights_service: RunningService,
) -> None:
    """PL/pgSQL plans a trigger's statements at its session's first call and keeps the plans:
    an update of a thousand rows (the lifetime value publish, a full refresh) in a session whose
    first update wrote one row is counted in a moment, not in nested loops sized for one row
    (which took minutes), and the counts still equal the rows'."""
    url = make_url(str(insights_service.context.settings.service_database_url("insights")))
    conn = await asyncpg.connect(**asyncpg_params(url))  # a new session: no plan kept yet
    many = [f"plans-{uuid.uuid4().hex}-{i:04}" for i in range(1000)]
    writing = conn.transaction()
    await writing.start()
    try:
        await conn.execute(
            "INSERT INTO member_figures (member_id, updated_at, units_12m, spend_units_12m, "
            "unit_spend_12m, bought_units_12m, first_unit, new_12m, rfm_segment) "
            "SELECT m, now(), '{mall}', '{mall}', '{10}', '{mall}', 'mall', true, 'champions' "
            "FROM unnest($1::text[]) AS m",
            many,
        )
        await conn.execute("UPDATE member_figures SET p_alive = 0.5 WHERE member_id = $1", many[0])
        await conn.execute("SET LOCAL statement_timeout = '20s'")
        began = time.monotonic()
        # What the lifetime value publish writes (no counted column), then a change of what
        # every count keeps, as a refresh writes it.
        await conn.execute(
            "UPDATE member_figures SET p_alive = 0.25, predicted_value_12m = 3 "
            "WHERE member_id = ANY($1::text[])",
            many,
        )
        await conn.execute(
            "UPDATE member_figures SET units_12m = '{hotel,mall}', spend_units_12m = '{hotel}', "
            "unit_spend_12m = '{4}', bought_units_12m = '{hotel}', first_unit = 'hotel', "
            "next_unit = 'mall', rfm_segment = 'loyal' WHERE member_id = ANY($1::text[])",
            many,
        )
        took = time.monotonic() - began
        for check in (_DIFFERENCES, test_spend_share._DIFFERENCES, test_flows._DIFFERENCES):
            assert await conn.fetch(check) == []
    finally:
        await writing.rollback()
        await conn.close()
    assert took < 10, took
