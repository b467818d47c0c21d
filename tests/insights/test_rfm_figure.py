"""RFM from generated histories: members buy at the group's units through the real points
service in a month of 2020 no other test buys in (each test its own), the domain's Python
reference scores the same purchases, and the service's SQL must give the same scores, segments
and counts; a merge moves a member's segment, an erasure leaves the counts and the lists; the
access rules of the other figures; bad input; one call through the gateway."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_insights.domain.rfm import (
    Purchase,
    RfmScore,
    RfmSegment,
    activity_in_window,
    rfm_grid,
    score_groups,
    score_members,
)
from loyalty_kit.kernel.money import format_money
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway
from tests.insights.conftest import Member, Suite, period, unit_team, until
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

UNITS = ("mall", "hotel", "cinema")

# Months of 2020 no other test buys in (test_facts uses August), each test its own, in a
# random order so that a leftover of one test could never make another pass.
_MONTHS = iter(random.sample([2, 3, 4, 5, 6], 5))


def own_month() -> tuple[datetime, datetime]:
    """A calendar month (UTC): the window's last day is the month's last day."""
    month = next(_MONTHS)
    return datetime(2020, month, 1, tzinfo=UTC), datetime(2020, month + 1, 1, tzinfo=UTC)


class History:
    """Purchases made through the points service, kept for the reference."""

    def __init__(self, suite: Suite, start: datetime, end: datetime) -> None:
        self.suite, self.start, self.end = suite, start, end
        self.purchases: list[tuple[Purchase, str]] = []  # with the unit

    async def buy(self, member: Member, unit: str, amount: str, day: int) -> None:
        when = self.start + timedelta(days=day, hours=random.randint(0, 23), minutes=7)
        assert when < self.end
        await self.suite.points.earn(member.name, unit, amount, occur=when.isoformat())
        self.purchases.append((Purchase(member.id, when.date(), Decimal(amount)), unit))

    async def generate(self, members: list[Member], rng: random.Random) -> None:
        """Each member buys 1-4 times on random days at random units, random amounts (ties
        in frequency and some in recency, as real histories have)."""
        last_day = (self.end - self.start).days - 1
        for member in members:
            for _ in range(rng.randint(1, 4)):
                amount = f"{rng.randint(5, 500)}.{rng.randint(0, 99):02d}"
                await self.buy(member, rng.choice(UNITS), amount, rng.randint(0, last_day))

    def reference(self, owners: dict[str, str] | None = None, unit: str = "") -> list[RfmScore]:
        """The Python reference's scores of the members who bought (in `unit`), each absorbed
        member's purchases counted for its survivor (`owners`)."""
        owners = owners or {}
        moved = [
            Purchase(owners.get(p.member_id, p.member_id), p.on, p.amount)
            for p, u in self.purchases
            if not unit or u == unit
        ]
        members = sorted({p.member_id for p in moved})
        last_day = (self.end - timedelta(microseconds=1)).date()
        return score_members(
            activity_in_window(moved, members, self.start.date(), last_day), last_day
        )


def scored(member: pb.RfmMember) -> RfmScore:
    return RfmScore(
        member_id=member.member.removeprefix("members/"),
        recency_days=member.recency_days if member.HasField("recency_days") else None,
        frequency=member.frequency,
        monetary=Decimal(member.monetary.amount),
        recency_score=member.recency_score,
        frequency_score=member.frequency_score,
        monetary_score=member.monetary_score,
    )


async def members_of(
    insights: Any, ask: dict[str, Any], segment: RfmSegment, page_size: int = 3
) -> list[RfmScore]:
    """Every member of `segment`, page by page, checking each member's segment."""
    found: list[RfmScore] = []
    token = ""
    while True:
        page = await insights.GetRfm(
            pb.GetRfmRequest(**ask, segment=segment.value, page_size=page_size, page_token=token)
        )
        assert len(page.members) <= page_size
        assert all(m.segment == segment.value for m in page.members)
        found += [scored(m) for m in page.members]
        token = page.next_page_token
        if not token:
            return found


def scores_of(m: RfmScore) -> tuple[int, int, int]:
    return (m.recency_score, m.frequency_score, m.monetary_score)


def counts_of(found: pb.GetRfmResponse) -> dict[str, int]:
    return {s.segment: s.members for s in found.segments}


def expected_counts(reference: list[RfmScore]) -> dict[str, int]:
    counted = Counter(s.segment.value for s in reference)
    return {s.value: counted.get(s.value, 0) for s in RfmSegment}


Cell = tuple[int, int, int, str]  # recency score, frequency score, members, average amount


def grid_of(found: pb.GetRfmResponse) -> list[Cell]:
    """The answer's grid, checking it is every cell once, by recency then frequency."""
    cells = [(c.recency_score, c.frequency_score) for c in found.grid]
    assert cells == [(r, f) for r in range(1, 6) for f in range(1, 6)]
    return [
        (c.recency_score, c.frequency_score, c.members, c.average_monetary.amount)
        for c in found.grid
    ]


def expected_grid(reference: list[RfmScore], currency: str) -> list[Cell]:
    return [
        (c.recency_score, c.frequency_score, c.members, format_money(c.average_monetary, currency))
        for c in rfm_grid(score_groups(reference))
    ]


def but_first_cell(grid: list[Cell]) -> list[Cell]:
    """The grid but its (1, 1) cell, where members registered before the window (other tests
    import some) without a purchase in it fall too."""
    return grid[1:]


def without_lost(counts: dict[str, int]) -> dict[str, int]:
    """Counts but `lost`: members registered before the window (other tests import some)
    without a purchase in it are lost too, and are no member of this history."""
    return {s: n for s, n in counts.items() if s != RfmSegment.LOST.value}


async def answer(
    insights: Any, ask: dict[str, Any], mine: set[str]
) -> tuple[dict[str, int], dict[str, list[RfmScore]], list[Cell]]:
    """The counts (but lost), each segment's members of this history and the grid (but its
    first cell), as the service gives them."""
    found = await insights.GetRfm(pb.GetRfmRequest(**ask))
    assert [s.segment for s in found.segments] == [s.value for s in RfmSegment]
    assert sum(c.members for c in found.grid) == sum(s.members for s in found.segments)
    listed = {}
    for segment in RfmSegment:
        members = await members_of(insights, ask, segment)
        assert [m.member_id for m in members] == sorted(m.member_id for m in members)
        listed[segment.value] = [m for m in members if m.member_id in mine]
    return without_lost(counts_of(found)), listed, but_first_cell(grid_of(found))


async def check(insights: Any, ask: dict[str, Any], reference: list[RfmScore]) -> None:
    """The service's counts, every segment's members and the grid equal the reference's (once
    the facts have caught up with the purchases)."""
    expected = (
        without_lost(expected_counts(reference)),
        {
            segment.value: sorted(
                (s for s in reference if s.segment == segment), key=lambda s: s.member_id
            )
            for segment in RfmSegment
        },
        but_first_cell(expected_grid(reference, "CNY")),
    )
    mine = {s.member_id for s in reference}
    found = await until(lambda: answer(insights, ask, mine), lambda f: f == expected)
    assert found == expected
    lost = counts_of(await insights.GetRfm(pb.GetRfmRequest(**ask)))[RfmSegment.LOST.value]
    assert lost >= expected_counts(reference)[RfmSegment.LOST.value]


async def test_scores_and_segments_are_the_references(suite: Suite) -> None:
    start, end = own_month()
    rng = random.Random(uuid.uuid4().int)
    members = [await suite.member() for _ in range(17)]
    history = History(suite, start, end)
    await history.generate(members, rng)
    reference = history.reference()
    assert len(reference) == 17
    await check(suite.insights(), period(start, end), reference)

    # Per unit: the unit's purchases, its buyers scored among themselves.
    for unit in UNITS:
        await check(
            suite.insights(), {**period(start, end), "unit": unit}, history.reference(unit=unit)
        )


async def test_known_segments_of_a_history_built_for_them(suite: Suite) -> None:
    """Five members with distinct R, F and M so that each quintile holds one: the scores are
    known without the reference."""
    start, end = own_month()
    history = History(suite, start, end)
    members = [await suite.member() for _ in range(5)]
    # Member i buys i + 1 times, the last on day 20 + i, each for 10 * (i + 1).
    for i, member in enumerate(members):
        for k in range(i + 1):
            await history.buy(member, "mall", f"{10 * (i + 1)}.00", 20 + i - k)
    insights = suite.insights()
    ask = period(start, end)
    last_day = (end - start).days - 1
    # Member i: R = F = M = i + 1, so FM = i + 1, and one segment each.
    segments = [
        RfmSegment.LOST,
        RfmSegment.HIBERNATING,
        RfmSegment.NEED_ATTENTION,
        RfmSegment.LOYAL,
        RfmSegment.CHAMPIONS,
    ]
    expected = {
        segment: [(m.id, last_day - 20 - i, i + 1, Decimal(10 * (i + 1) ** 2), i + 1, i + 1, i + 1)]
        for i, (m, segment) in enumerate(zip(members, segments, strict=True))
    }
    mine = {m.id for m in members}

    async def found() -> dict[RfmSegment, list[tuple[Any, ...]]]:
        return {
            segment: [
                (m.member_id, m.recency_days, m.frequency, m.monetary, *scores_of(m))
                for m in await members_of(insights, ask, segment)
                if m.member_id in mine
            ]
            for segment in segments
        }

    assert await until(found, lambda f: f == expected) == expected


async def test_a_merge_moves_the_survivors_segment_and_an_erasure_only_the_lists(
    suite: Suite,
) -> None:
    start, end = own_month()
    rng = random.Random(uuid.uuid4().int)
    others = [await suite.member() for _ in range(8)]
    history = History(suite, start, end)
    await history.generate(others, rng)
    survivor, absorbed = await suite.member(), await suite.member()
    # The survivor bought once, long ago in the window and little; the absorbed member often,
    # lately and much: merged, the survivor is among the best.
    await history.buy(survivor, "mall", "1.00", 0)
    for day in (20, 24, 26, 27, 27):
        await history.buy(absorbed, "hotel", "900.00", day)
    insights = suite.insights()
    ask = period(start, end)
    before = history.reference()
    await check(insights, ask, before)
    segment_before = next(s.segment for s in before if s.member_id == survivor.id)

    await suite.identity().MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=survivor.name, absorbed=absorbed.name, request_id=uuid.uuid4().hex
        )
    )
    after = history.reference({absorbed.id: survivor.id})
    merged = next(s for s in after if s.member_id == survivor.id)
    assert merged.segment != segment_before
    assert (merged.frequency, merged.monetary) == (6, Decimal("4501.00"))
    assert absorbed.id not in {s.member_id for s in after}
    await check(insights, ask, after)

    # Erased: still counted, no longer listed.
    gone = others[0]
    segment = next(s.segment for s in after if s.member_id == gone.id)
    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=gone.name, request_id=uuid.uuid4().hex)
    )
    await until(
        lambda: members_of(insights, ask, segment),
        lambda f: gone.id not in {m.member_id for m in f},
    )
    assert gone.id not in {m.member_id for m in await members_of(insights, ask, segment)}
    counts = counts_of(await insights.GetRfm(pb.GetRfmRequest(**ask)))
    assert without_lost(counts) == without_lost(expected_counts(after))


async def test_a_unit_team_reads_its_own_units_rfm_only(suite: Suite) -> None:
    start, end = own_month()
    mall = suite.insights(unit_team("mall"))
    own = await mall.GetRfm(pb.GetRfmRequest(**period(start, end), unit="mall"))
    assert [s.segment for s in own.segments] == [s.value for s in RfmSegment]
    group = await fails(mall.GetRfm(pb.GetRfmRequest(**period(start, end))))
    assert (group.code, group.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    other = await fails(mall.GetRfm(pb.GetRfmRequest(**period(start, end), unit="hotel")))
    assert other.code == grpc.StatusCode.PERMISSION_DENIED


async def test_bad_input_is_refused_with_the_field_named(suite: Suite) -> None:
    now = suite.clock()
    insights = suite.insights()
    ask = period(now - timedelta(days=30), now)
    # No period at all is the standard trailing year; half a period is a mistake.
    no_start = await fails(
        insights.GetRfm(pb.GetRfmRequest(end_time=ask["end_time"], segment="loyal"))
    )
    assert (no_start.code, no_start.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["start_time"])
    # A time outside what a Timestamp may hold is the caller's mistake, not an internal error.
    beyond = pb.GetRfmRequest(**ask)
    beyond.end_time.seconds, beyond.end_time.nanos = -(2**63), -1
    out_of_range = await fails(insights.GetRfm(beyond))
    assert (out_of_range.code, out_of_range.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["end_time.nanos"],
    )
    segment = await fails(insights.GetRfm(pb.GetRfmRequest(**ask, segment="whales")))
    assert (segment.code, segment.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["segment"])
    for token in ("not-a-token", "eyJhIjogMX0", "x" * 2000):
        bad = await fails(
            insights.GetRfm(pb.GetRfmRequest(**ask, segment="lost", page_token=token))
        )
        assert (bad.code, bad.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])
    size = await fails(insights.GetRfm(pb.GetRfmRequest(**ask, segment="lost", page_size=-1)))
    assert (size.code, size.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_size"])
    unit = await fails(insights.GetRfm(pb.GetRfmRequest(**ask, unit="no-such-unit")))
    assert (unit.code, unit.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["unit"])

    # A token of one segment's list is no token of another's.
    start, end = datetime(2000, 1, 1, tzinfo=UTC), now
    first = await insights.GetRfm(
        pb.GetRfmRequest(**period(start, end), segment="lost", page_size=1)
    )
    if first.next_page_token:
        other = await fails(
            insights.GetRfm(
                pb.GetRfmRequest(
                    **period(start, end), segment="loyal", page_token=first.next_page_token
                )
            )
        )
        assert (other.code, other.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])


async def test_rfm_over_http_through_the_gateway(
    suite: Suite, gateway_service: RunningService
) -> None:
    start, end = own_month()
    history = History(suite, start, end)
    member = await suite.member()
    await history.buy(member, "cinema", "42.00", 3)
    gateway = Gateway(
        gateway_service, f"http://127.0.0.1:{gateway_service.context.settings.gateway_http_port}"
    )
    # A lone buyer ranks first and last at once: scores 1, 1, 1, lost.
    params = {
        "startTime": start.isoformat().replace("+00:00", "Z"),
        "endTime": end.isoformat().replace("+00:00", "Z"),
        "segment": "lost",
        "pageSize": "1000",
    }
    async with await gateway.session("group", "insights:group") as http:
        found = await until(
            lambda: http.get("/v1/insights/rfm", params=params),
            lambda r: (
                r.status_code == 200
                and member.name in {m["member"] for m in r.json().get("members", [])}
            ),
        )
        assert found.status_code == 200, found.text
        body = found.json()
        mine = [m for m in body["members"] if m["member"] == member.name]
        assert [(m["frequency"], m["segment"], m["monetary"]["amount"]) for m in mine] == [
            ("1", "lost", "42.00")
        ]
        assert {s["segment"] for s in body["segments"]} == {s.value for s in RfmSegment}
        bad = await http.get("/v1/insights/rfm", params={**params, "segment": "whales"})
        assert bad.status_code == 400, bad.text
