"""The spend share: one unit asked for answers that unit's spend as the total (its share still
of every unit's); without a period it is the standard trailing 12 months read from sums of the
members' figures (`spend_counts`), kept by triggers as the rows are written, which equal the
rows' own sums after purchases, a refund, a merge and an erasure, and, after a full refresh, the
spend share computed from the facts over the same 12 months (erased members apart)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_insights.adapters.figures import OWNERS
from loyalty_insights.domain.crossunit import SPENDING
from loyalty_insights.domain.figures import year_before
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import moment_of
from sqlalchemy import text

from tests.insights.conftest import Member, Suite, period, until
from tests.insights.test_cross_unit import at, earn, own_months
from tests.insights.test_flows import three_buy
from tests.insights.test_member_figures import refresh, row_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

Spend = dict[str, tuple[Decimal, int]]


def spent(found: pb.GetSpendShareResponse) -> Spend:
    return {s.unit: (Decimal(s.spend.amount), s.members) for s in found.units}


async def test_one_unit_asked_for_has_its_own_spend_as_the_total(suite: Suite) -> None:
    start, end = own_months()
    a, b = await suite.member(), await suite.member()
    await earn(suite, a, "mall", "300.00", at(start, 1))
    await earn(suite, a, "hotel", "100.00", at(start, 2))
    await earn(suite, b, "mall", "100.00", at(start, 3))
    insights = suite.insights()
    group = await until(
        lambda: insights.GetSpendShare(pb.GetSpendShareRequest(**period(start, end))),
        lambda f: Decimal(f.total_spend.amount or 0) == Decimal("500.00"),
    )
    assert spent(group) == {"hotel": (Decimal("100.00"), 1), "mall": (Decimal("400.00"), 2)}

    mall = await insights.GetSpendShare(pb.GetSpendShareRequest(**period(start, end), unit="mall"))
    assert spent(mall) == {"mall": (Decimal("400.00"), 2)}
    assert Decimal(mall.total_spend.amount) == Decimal("400.00")  # not the group's 500
    assert mall.units[0].share == pytest.approx(0.8)  # of every unit's spend


# The stored sums against the rows' own, in one statement (one snapshot): the units where they
# differ.
_DIFFERENCES = """
WITH stored AS (
    SELECT unit, sum(spend) AS spend, sum(members) AS members FROM spend_counts
    GROUP BY unit HAVING sum(spend) <> 0 OR sum(members) <> 0
), summed AS (
    SELECT u.unit, sum(u.spend) AS spend,
           count(*) FILTER (WHERE u.unit = ANY(m.bought_units_12m)) AS members
    FROM member_figures m, unnest(m.spend_units_12m, m.unit_spend_12m) AS u (unit, spend)
    GROUP BY 1
)
SELECT coalesce(s.unit, c.unit) AS unit, s.spend AS stored, c.spend AS summed,
       s.members AS stored_members, c.members AS summed_members
FROM stored s FULL JOIN (SELECT * FROM summed WHERE spend <> 0 OR members <> 0) c
  ON c.unit = s.unit
WHERE s.spend IS DISTINCT FROM c.spend OR s.members IS DISTINCT FROM c.members
"""


async def differences(service: RunningService) -> list[dict[str, Any]]:
    async with service.context.database() as session:
        rows = (await session.execute(text(_DIFFERENCES))).mappings().all()
        return [dict(r) for r in rows]


async def others(service: RunningService, mine: list[Member]) -> Spend:
    """What the rows of every member but `mine` sum to (other tests' members move too)."""
    async with service.context.database() as session:
        rows = await session.execute(
            text(
                "SELECT u.unit, sum(u.spend), "
                "count(*) FILTER (WHERE u.unit = ANY(m.bought_units_12m)) FROM member_figures m, "
                "unnest(m.spend_units_12m, m.unit_spend_12m) AS u (unit, spend) "
                "WHERE NOT m.member_id = ANY(:mine) GROUP BY 1"
            ),
            {"mine": [m.id for m in mine]},
        )
        return {u: (Decimal(s), int(n)) for u, s, n in rows.all()}


def plus(one: Spend, other: Spend) -> Spend:
    together = dict(one)
    for unit, (spend, members) in other.items():
        was = together.get(unit, (Decimal(0), 0))
        together[unit] = (was[0] + spend, was[1] + members)
    return {u: f for u, f in together.items() if f != (Decimal(0), 0)}


async def standard(suite: Suite) -> Spend:
    found = await suite.insights().GetSpendShare(pb.GetSpendShareRequest())
    total = sum((s for s, _ in spent(found).values()), Decimal(0))
    assert Decimal(found.total_spend.amount or 0) == total
    return spent(found)


async def erased_spend(service: RunningService, currency: str) -> Spend:
    """Erased members' spend by unit over the 12 months of the last refresh, their absorbed
    members' theirs (what the facts count and the members' figures do not)."""
    async with service.context.database() as session:
        rows = await session.execute(
            text(
                OWNERS
                + """, last AS (SELECT as_of FROM figure_refreshes ORDER BY id DESC LIMIT 1),
                acts AS (
                    SELECT coalesce(o.owner, a.member_id) AS member_id, a.unit, a.kind, a.spend
                    FROM activity a CROSS JOIN last
                    LEFT JOIN owners o ON o.member_id = a.member_id
                    WHERE a.occurred_at >= last.as_of - interval '12 months'
                      AND a.occurred_at < last.as_of AND a.kind = ANY(:kinds)
                      AND a.currency = :currency
                )
                SELECT unit, sum(spend),
                       count(DISTINCT member_id) FILTER (WHERE kind <> 'refund')
                FROM acts WHERE member_id IN (SELECT member_id FROM erased_members)
                GROUP BY 1
                """
            ),
            {"kinds": list(SPENDING), "currency": currency},
        )
        return {u: (Decimal(s), int(n)) for u, s, n in rows.all()}


async def test_the_standard_spend_share_is_read_from_sums_kept_with_the_rows(
    suite: Suite, insights_service: RunningService
) -> None:
    await refresh(suite)
    assert await differences(insights_service) == []
    a, b, c = [await suite.member(u) for u in ("mall", "mall", "cinema")]
    mine = [a, b, c]

    async def expect(known: Spend) -> None:
        """The standard answer is the other members' sums and mine, as known."""

        async def both() -> tuple[Spend, Spend]:
            rest = await others(insights_service, mine)
            return await standard(suite), plus(rest, known)

        found, wanted = await until(both, lambda f: f[0] == f[1])
        assert await differences(insights_service) == []
        assert found == wanted

    await three_buy(suite, insights_service, a, b, c, "bought_units_12m")
    await expect(
        {
            "mall": (Decimal("70.00"), 2),
            "hotel": (Decimal("60.00"), 1),
            "cinema": (Decimal("20.00"), 1),
        }
    )

    # c absorbs b: one member's spend at the mall and the cinema.
    await suite.identity().MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=c.name, absorbed=b.name, request_id=uuid.uuid4().hex
        )
    )
    assert await until(lambda: row_of(insights_service, b.id), lambda r: r is None) is None
    await expect(
        {
            "mall": (Decimal("70.00"), 2),
            "hotel": (Decimal("60.00"), 1),
            "cinema": (Decimal("20.00"), 1),
        }
    )

    # a is erased: its row leaves the members' figures, and its spend the stored sums.
    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=a.name, request_id=uuid.uuid4().hex)
    )
    c_spend = {"mall": (Decimal("30.00"), 1), "cinema": (Decimal("20.00"), 1)}
    await expect(c_spend)

    # A full refresh rewrites every row: the sums still equal the rows', and the answer the
    # spend share computed from the facts over the refresh's 12 months (erased members apart).
    done = await refresh(suite)
    await expect(c_spend)
    as_of = moment_of(done, "as_of")
    assert as_of is not None
    on_demand = await suite.insights().GetSpendShare(
        pb.GetSpendShareRequest(**period(year_before(as_of), as_of))
    )
    erased = await erased_spend(insights_service, on_demand.total_spend.currency_code)
    from_facts = plus(spent(on_demand), {u: (-s, -n) for u, (s, n) in erased.items()})
    assert from_facts == await standard(suite)
    hotel = await suite.insights().GetSpendShare(pb.GetSpendShareRequest(unit="hotel"))
    assert [s.unit for s in hotel.units] == (["hotel"] if "hotel" in from_facts else [])
    assert Decimal(hotel.total_spend.amount or 0) == from_facts.get("hotel", (Decimal(0), 0))[0]
