"""First unit -> next unit flows of the standard window (no period): read from counts of the
members' figures (`flow_counts`), kept by triggers as the rows are written, which equal the
rows' own counts after purchases, a merge and an erasure, and, after a full refresh, the flows
computed from the facts over the same 12 months (erased members apart)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pytest
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_insights.adapters.figures import OWNERS
from loyalty_insights.domain.crossunit import ACTIVE
from loyalty_insights.domain.figures import year_before
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import moment_of
from sqlalchemy import text

from tests.insights.conftest import Member, Suite, period, until
from tests.insights.test_cross_unit import earn
from tests.insights.test_member_figures import refresh, row_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

Flows = Counter[tuple[str, str]]

# The stored counts against the rows' own, in one statement: the flows where they differ.
_DIFFERENCES = """
WITH stored AS (
    SELECT from_unit, to_unit, sum(members) AS members FROM flow_counts
    GROUP BY 1, 2 HAVING sum(members) <> 0
), counted AS (
    SELECT first_unit AS from_unit, next_unit AS to_unit, count(*) AS members
    FROM member_figures WHERE new_12m GROUP BY 1, 2
)
SELECT coalesce(s.from_unit, c.from_unit) AS from_unit, coalesce(s.to_unit, c.to_unit) AS to_unit,
       s.members AS stored, c.members AS counted
FROM stored s FULL JOIN counted c ON c.from_unit = s.from_unit AND c.to_unit = s.to_unit
WHERE s.members IS DISTINCT FROM c.members
"""


async def three_buy(
    suite: Suite, insights_service: RunningService, a: Member, b: Member, c: Member, column: str
) -> None:
    """`a` buys at the mall then the hotel, `b` at the mall, `c` at the cinema (40, 60, 30 and
    20 yuan), each in the last days; until their rows' `column` lists those units."""

    def when(days: float) -> str:
        return (suite.clock() - timedelta(days=days)).isoformat()

    await earn(suite, a, "mall", "40.00", when(3))
    await earn(suite, a, "hotel", "60.00", when(2))
    await earn(suite, b, "mall", "30.00", when(5))
    await earn(suite, c, "cinema", "20.00", when(1))
    for member, units in ((a, ["hotel", "mall"]), (b, ["mall"]), (c, ["cinema"])):

        def ask(m: Member = member) -> Awaitable[dict[str, Any] | None]:
            return row_of(insights_service, m.id)

        def holds(r: dict[str, Any] | None, u: list[str] = units) -> bool:
            return r is not None and r[column] == u

        await until(ask, holds)


async def differences(service: RunningService) -> list[dict[str, Any]]:
    async with service.context.database() as session:
        return [dict(r) for r in (await session.execute(text(_DIFFERENCES))).mappings().all()]


async def others(service: RunningService, mine: list[Member]) -> Flows:
    """What the rows of every member but `mine` count (other tests' members move too)."""
    async with service.context.database() as session:
        rows = await session.execute(
            text(
                "SELECT first_unit, next_unit, count(*) FROM member_figures "
                "WHERE new_12m AND NOT member_id = ANY(:mine) GROUP BY 1, 2"
            ),
            {"mine": [m.id for m in mine]},
        )
        return Counter({(a, b): int(n) for a, b, n in rows.all()})


async def standard(suite: Suite, unit: str = "") -> Flows:
    found = await suite.insights().GetUnitFlows(pb.GetUnitFlowsRequest(unit=unit))
    return Counter({(f.from_unit, f.to_unit): f.members for f in found.flows})


async def erased_flows(service: RunningService) -> Flows:
    """Flows of erased members (their absorbed members' activity theirs) first active in the 12
    months of the last refresh: what the facts count and the members' figures do not."""
    async with service.context.database() as session:
        rows = await session.execute(
            text(
                OWNERS
                + """, last AS (SELECT as_of FROM figure_refreshes ORDER BY id DESC LIMIT 1),
                acts AS (
                    SELECT coalesce(o.owner, a.member_id) AS member_id, a.unit, a.occurred_at
                    FROM activity a CROSS JOIN last
                    LEFT JOIN owners o ON o.member_id = a.member_id
                    WHERE a.occurred_at < last.as_of AND a.kind = ANY(:kinds)
                ), firsts AS (
                    SELECT DISTINCT ON (member_id) member_id, unit, occurred_at
                    FROM acts ORDER BY member_id, occurred_at, unit
                ), nexts AS (
                    SELECT DISTINCT ON (a.member_id) a.member_id, a.unit
                    FROM acts a JOIN firsts f ON f.member_id = a.member_id AND a.unit <> f.unit
                    ORDER BY a.member_id, a.occurred_at, a.unit
                )
                SELECT f.unit, coalesce(n.unit, ''), count(*)
                FROM firsts f CROSS JOIN last LEFT JOIN nexts n ON n.member_id = f.member_id
                WHERE f.occurred_at >= last.as_of - interval '12 months'
                  AND f.member_id IN (SELECT member_id FROM erased_members)
                GROUP BY 1, 2
                """
            ),
            {"kinds": list(ACTIVE)},
        )
        return Counter({(a, b): int(n) for a, b, n in rows.all()})


async def test_the_standard_flows_are_read_from_counts_kept_with_the_rows(
    suite: Suite, insights_service: RunningService
) -> None:
    await refresh(suite)
    assert await differences(insights_service) == []
    a, b, c = [await suite.member(u) for u in ("mall", "mall", "cinema")]
    mine = [a, b, c]

    async def expect(known: dict[tuple[str, str], int]) -> None:
        async def both() -> tuple[Flows, Flows]:
            return await standard(suite), await others(insights_service, mine) + Counter(known)

        found, wanted = await until(both, lambda f: f[0] == f[1])
        assert await differences(insights_service) == []
        assert found == wanted

    await three_buy(suite, insights_service, a, b, c, "units")
    await expect({("mall", "hotel"): 1, ("mall", ""): 1, ("cinema", ""): 1})
    assert await standard(suite, "hotel") == Counter(
        {k: n for k, n in (await standard(suite)).items() if "hotel" in k}
    )

    # c absorbs b: first active at the mall (b's purchase), then the cinema.
    await suite.identity().MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=c.name, absorbed=b.name, request_id=uuid.uuid4().hex
        )
    )
    assert await until(lambda: row_of(insights_service, b.id), lambda r: r is None) is None
    await expect({("mall", "hotel"): 1, ("mall", "cinema"): 1})

    # a is erased: its row leaves the members' figures, and its flow the counts.
    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=a.name, request_id=uuid.uuid4().hex)
    )
    await expect({("mall", "cinema"): 1})

    # A full refresh rewrites every row: the counts still equal the rows', and the answer the
    # flows computed from the facts over the refresh's 12 months (erased members apart).
    done = await refresh(suite)
    await expect({("mall", "cinema"): 1})
    as_of = moment_of(done, "as_of")
    assert as_of is not None
    on_demand = await suite.insights().GetUnitFlows(
        pb.GetUnitFlowsRequest(**period(year_before(as_of), as_of))
    )
    from_facts = Counter({(f.from_unit, f.to_unit): f.members for f in on_demand.flows})
    assert from_facts - await erased_flows(insights_service) == await standard(suite)
