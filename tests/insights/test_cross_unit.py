"""Members across the group's units, from a generated history whose answers are known: members
earning at units through the real points service (purchases in a past period of this test's
own, so no other test's activity falls in it), read over gRPC and through the gateway; a merge
moves the figures and its unmerge moves them back; an erasure leaves the aggregates as they
were."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway
from tests.insights.conftest import Member, Suite, period, until

pytestmark = pytest.mark.asyncio(loop_scope="session")


# Periods of three months apart, each test its own (in a random order: a leftover of a test
# could never make another pass).
_PERIODS = iter(random.sample([(y, m) for y in (2021, 2022) for m in (1, 4, 7, 10)], 8))


def own_months() -> tuple[datetime, datetime]:
    """Two months of 2021-2022 no other test earns in, as a period from the 2nd of the first
    to the 2nd of the month after the second (odd minutes: no round hour of another test)."""
    year, month = next(_PERIODS)
    start = datetime(year, month, 2, 9, 17, 11, tzinfo=UTC)
    after = year * 12 + month - 1 + 2  # two months on
    end = datetime(after // 12, after % 12 + 1, 2, 9, 17, 11, tzinfo=UTC)
    return start, end


def at(start: datetime, days: int) -> str:
    return (start + timedelta(days=days, minutes=3)).isoformat()


async def earn(suite: Suite, member: Member, unit: str, amount: str, when: str) -> None:
    await suite.points.earn(member.name, unit, amount, occur=when)


def months_of(found: pb.GetMultiUnitMembersResponse) -> list[tuple[str, int, int]]:
    return [(m.month, m.active_members, m.multi_unit_members) for m in found.months]


async def test_members_across_units_have_the_answers_of_their_history(suite: Suite) -> None:
    start, end = own_months()
    first, second = (start.strftime("%Y-%m"), (start + timedelta(days=31)).strftime("%Y-%m"))
    a, b, c, d = [await suite.member() for _ in range(4)]
    await earn(suite, a, "mall", "100.00", at(start, 1))
    await earn(suite, a, "hotel", "200.00", at(start, 3))  # two units in the first month
    await earn(suite, b, "mall", "50.00", at(start, 2))
    await earn(suite, b, "mall", "70.00", at(start, 35))  # one unit, both months
    await earn(suite, c, "hotel", "300.00", at(start, 33))
    await earn(suite, c, "cinema", "40.00", at(start, 36))  # two units in the second month
    await earn(suite, d, "cinema", "60.00", at(start, 4))
    await earn(suite, d, "mall", "80.00", at(start, 40))  # one unit a month, two in the period
    insights = suite.insights()
    ask = pb.GetMultiUnitMembersRequest(**period(start, end))

    expected = [(first, 3, 1), (second, 3, 1), (end.strftime("%Y-%m"), 0, 0)]
    found = await until(
        lambda: insights.GetMultiUnitMembers(ask), lambda f: months_of(f) == expected
    )
    assert months_of(found) == expected
    assert (found.period.active_members, found.period.multi_unit_members) == (4, 3)

    cinema = await insights.GetMultiUnitMembers(
        pb.GetMultiUnitMembersRequest(**period(start, end), unit="cinema")
    )
    assert months_of(cinema)[:2] == [(first, 1, 0), (second, 1, 1)]
    assert (cinema.period.active_members, cinema.period.multi_unit_members) == (2, 2)

    overlap = await insights.GetUnitOverlap(pb.GetUnitOverlapRequest(**period(start, end)))
    assert {(p.unit, p.other_unit): p.members for p in overlap.pairs} == {
        ("mall", "mall"): 3,
        ("hotel", "hotel"): 2,
        ("cinema", "cinema"): 2,
        ("mall", "hotel"): 1,
        ("hotel", "mall"): 1,
        ("hotel", "cinema"): 1,
        ("cinema", "hotel"): 1,
        ("cinema", "mall"): 1,
        ("mall", "cinema"): 1,
    }

    flows = await insights.GetUnitFlows(pb.GetUnitFlowsRequest(**period(start, end)))
    assert sorted((f.from_unit, f.to_unit, f.members) for f in flows.flows) == [
        ("cinema", "mall", 1),
        ("hotel", "cinema", 1),
        ("mall", "", 1),
        ("mall", "hotel", 1),
    ]

    spend = await insights.GetSpendShare(pb.GetSpendShareRequest(**period(start, end)))
    assert {s.unit: (Decimal(s.spend.amount), s.members) for s in spend.units} == {
        "cinema": (Decimal("100.00"), 2),
        "hotel": (Decimal("500.00"), 2),
        "mall": (Decimal("300.00"), 3),
    }
    assert Decimal(spend.total_spend.amount) == Decimal("900.00")
    assert {s.unit: round(s.share, 4) for s in spend.units} == {
        "cinema": round(1 / 9, 4),
        "hotel": round(5 / 9, 4),
        "mall": round(3 / 9, 4),
    }


async def test_a_merge_moves_the_figures_and_an_unmerge_moves_them_back(suite: Suite) -> None:
    start, end = own_months()
    survivor, absorbed = await suite.member(), await suite.member()
    await earn(suite, survivor, "mall", "100.00", at(start, 1))
    await earn(suite, absorbed, "hotel", "100.00", at(start, 2))
    insights = suite.insights()
    ask = pb.GetMultiUnitMembersRequest(**period(start, end))

    def figures(f: pb.GetMultiUnitMembersResponse) -> tuple[int, int]:
        return (f.period.active_members, f.period.multi_unit_members)

    before = await until(lambda: insights.GetMultiUnitMembers(ask), lambda f: figures(f) == (2, 0))
    assert figures(before) == (2, 0)

    await suite.identity().MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=survivor.name, absorbed=absorbed.name, request_id=uuid.uuid4().hex
        )
    )
    merged = await until(lambda: insights.GetMultiUnitMembers(ask), lambda f: figures(f) == (1, 1))
    assert figures(merged) == (1, 1)  # one member, active at the mall and the hotel
    overlap = await insights.GetUnitOverlap(pb.GetUnitOverlapRequest(**period(start, end)))
    assert {(p.unit, p.other_unit): p.members for p in overlap.pairs}[("mall", "hotel")] == 1

    await suite.identity().UnmergeMembers(
        identity_pb.UnmergeMembersRequest(
            survivor=survivor.name,
            restored=absorbed.name,
            request_id=uuid.uuid4().hex,
            identities=[member_pb2.Identity(type="phone", value=absorbed.phone)],
            reason="two people, one family phone",
        )
    )
    unmerged = await until(
        lambda: insights.GetMultiUnitMembers(ask), lambda f: figures(f) == (2, 0)
    )
    assert figures(unmerged) == (2, 0)

    # Erasure: the member leaves per-member views; the aggregates keep counting it.
    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=absorbed.name, request_id=uuid.uuid4().hex)
    )

    async def balance() -> Any:
        """The erased member's balance; None while points has yet to see the unmerge (insights
        may be ahead of it: the account is still merged there)."""
        try:
            return await suite.points.balance(absorbed.name)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            return None

    await until(balance, lambda b: b is not None and b.available == 0)
    spend = await insights.GetSpendShare(pb.GetSpendShareRequest(**period(start, end)))
    assert {s.unit: s.members for s in spend.units} == {"hotel": 1, "mall": 1}
    assert figures(await insights.GetMultiUnitMembers(ask)) == (2, 0)


def counts(answer: dict[str, Any]) -> tuple[str, str]:
    """The whole period's members active and active in two or more units, as JSON carries them
    (int64 as strings)."""
    return (answer["period"]["activeMembers"], answer["period"]["multiUnitMembers"])


async def test_a_figure_over_http_through_the_gateway(
    suite: Suite, gateway_service: RunningService
) -> None:
    start, end = own_months()
    member = await suite.member()
    await earn(suite, member, "mall", "10.00", at(start, 1))
    await earn(suite, member, "cinema", "10.00", at(start, 2))
    gateway = Gateway(
        gateway_service, f"http://127.0.0.1:{gateway_service.context.settings.gateway_http_port}"
    )
    params = {
        "startTime": start.isoformat().replace("+00:00", "Z"),
        "endTime": end.isoformat().replace("+00:00", "Z"),
    }
    async with await gateway.session("group", "insights:group") as http:
        found = await until(
            lambda: http.get("/v1/insights/multiUnitMembers", params=params),
            lambda r: r.status_code == 200 and r.json()["period"].get("multiUnitMembers") == "1",
        )
        assert found.status_code == 200, found.text
        assert counts(found.json()) == ("1", "1")
        bad = await http.get("/v1/insights/multiUnitMembers", params={**params, "unit": "nowhere"})
        assert bad.status_code == 400, bad.text
    async with await gateway.session("mall", "insights:read") as mall:
        group = await mall.get("/v1/insights/multiUnitMembers", params=params)
        assert group.status_code == 403, group.text
        own = await mall.get("/v1/insights/multiUnitMembers", params={**params, "unit": "mall"})
        assert own.status_code == 200, own.text
        assert counts(own.json()) == ("1", "1")
