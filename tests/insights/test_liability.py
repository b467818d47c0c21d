"""The points liability kept from the points service's ledger events reconciles exactly with
the points service's own settlement: a history of earns, a redemption, an expiry, a legacy
balance carried over (MIGRATION) and an erasure's forfeit, driven through the real services and
the bus, gives the same points issued, redeemed, expired and forfeited per unit for the period,
and the outstanding points move by what the history put in each expiry month."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_kit.caller import Caller
from loyalty_kit.timestamps import timestamp

from tests.insights.conftest import GROUP_TEAM, Suite, period, unit_team, until
from tests.points.conftest import ADMIN
from tests.support.events import publish
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

TILL = Caller(unit="hotel", client_id="hotel-pos", scopes=frozenset({"earn"}))

FIGURES = ("points_issued", "points_redeemed", "points_expired", "points_forfeited")


def settled(settlement: points_pb.GetSettlementResponse) -> dict[str, tuple[int, ...]]:
    return {u.unit: tuple(getattr(u, f) for f in FIGURES) for u in settlement.units}


def kept(liability: pb.GetPointsLiabilityResponse) -> dict[str, tuple[int, ...]]:
    """The period's figures per unit (units with only outstanding points left out, as the
    settlement lists only units with postings in the period)."""
    found = {u.unit: tuple(getattr(u, f) for f in FIGURES) for u in liability.units}
    return {u: f for u, f in found.items() if any(f)}


def by_month(liability: pb.GetPointsLiabilityResponse) -> dict[tuple[str, str], int]:
    return {(u.unit, e.month): e.points for u in liability.units for e in u.expiring}


async def liability(suite: Suite, start: datetime, end: datetime, unit: str = "") -> Any:
    return await suite.insights().GetPointsLiability(
        pb.GetPointsLiabilityRequest(**period(start, end), unit=unit)
    )


async def test_liability_equals_the_settlement_to_the_point(suite: Suite) -> None:
    points = suite.points
    start = suite.clock() - timedelta(seconds=1)
    before = await liability(suite, start - timedelta(seconds=1), start)

    shopper, legacy, leaver = [await suite.member() for _ in range(3)]
    # An old purchase whose points have expired by now, then two of today.
    old = await points.earn(shopper.name, "mall", "80.00", occur="2023-05-10T10:00:00+08:00")
    await points.as_(ADMIN).RunExpiry(points_pb.RunExpiryRequest())
    mall = await points.earn(shopper.name, "mall", "300.00")
    hotel = await points.earn(shopper.name, "hotel", "200.00")
    # Spent at the cinema: soonest expiring first, then oldest (the mall's lot).
    await points.as_().RedeemPoints(
        points_pb.RedeemPointsRequest(
            member=shopper.name, request_id=uuid.uuid4().hex, unit="cinema", points=50
        )
    )
    # A legacy cinema balance carried over: 500 legacy points at 5:1, expiring May 2031.
    await publish(
        points.service.context.settings,
        "identity",
        identity_events.MembersImported(
            member_import=f"memberImports/{uuid.uuid4().hex[:12]}",
            unit="cinema",
            members=[
                identity_events.ImportedMember(
                    member_id=legacy.id,
                    legacy_key=uuid.uuid4().hex,
                    created=True,
                    legacy_points=500,
                    legacy_points_expire_at=timestamp(datetime(2031, 5, 20, tzinfo=UTC)),
                )
            ],
            imported_at=timestamp(datetime.now(UTC)),
        ),
    )
    # A member who earns at the hotel, then is erased: the points are forfeited.
    await points.earn(leaver.name, "hotel", "100.00")
    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=leaver.name, request_id=uuid.uuid4().hex)
    )
    await until(lambda: points.balance(legacy.name), lambda b: b.available == 100)

    async def settlement_now() -> points_pb.GetSettlementResponse:
        answer: points_pb.GetSettlementResponse = await points.as_(ADMIN).GetSettlement(
            points_pb.GetSettlementRequest(
                start_time=timestamp(start),
                end_time=timestamp(suite.clock() + timedelta(seconds=1)),
            )
        )
        return answer

    # The erasure's forfeit follows identity's event a moment later.
    await until(settlement_now, lambda s: settled(s).get("hotel", (0, 0, 0, 0))[3] > 0, 30)
    end = suite.clock() + timedelta(seconds=1)
    settlement = await points.as_(ADMIN).GetSettlement(
        points_pb.GetSettlementRequest(start_time=timestamp(start), end_time=timestamp(end))
    )
    expected = settled(settlement)
    assert expected["mall"][2] >= old.posting.points  # the old lot expired in the period
    assert expected["hotel"][3] > 0  # the leaver's points were forfeited
    assert expected["cinema"][0] >= 100  # the legacy balance carried over

    found = await until(lambda: liability(suite, start, end), lambda f: kept(f) == expected)
    assert kept(found) == expected
    # The outstanding points moved by the period's ledger, in every unit together...
    assert (
        found.total.points_outstanding - before.total.points_outstanding == settlement.ledger_points
    )
    # ...and by what this history put in the months far ahead (nothing else expires then).
    moved = {
        key: points - by_month(before).get(key, 0)
        for key, points in by_month(found).items()
        if key[1] >= "2031"
    }
    assert moved.get(("cinema", "2031-05")) == 100
    for unit in found.units:
        assert sum(e.points for e in unit.expiring) == unit.points_outstanding
        assert unit.breakage == pytest.approx(
            unit.points_expired / unit.points_issued if unit.points_issued > 0 else 0.0
        )
    # Valued at the programme's point value (Huayue: 0.01 CNY a point... whatever it is, the
    # same as the settlement's value of the points it issued).
    mall_settled = next(u for u in settlement.units if u.unit == "mall")
    value_per_point = float(mall_settled.value_issued.amount) / mall_settled.points_issued
    mall_found = next(u for u in found.units if u.unit == "mall")
    assert mall_found.value_outstanding.currency_code == mall_settled.value_issued.currency_code
    assert float(mall_found.value_outstanding.amount) == pytest.approx(
        mall_found.points_outstanding * value_per_point, abs=0.01
    )
    assert mall.posting.points > 50 and hotel.posting.points > 0


async def test_a_unit_reads_its_own_liability_only(suite: Suite) -> None:
    end = suite.clock()
    start = end - timedelta(days=30)

    async def both() -> tuple[Any, Any]:
        """The hotel's figures as the hotel's team and the group's team read them."""
        own = await suite.insights(unit_team("hotel")).GetPointsLiability(
            pb.GetPointsLiabilityRequest(**period(start, end), unit="hotel")
        )
        return own, await liability(suite, start, end, unit="hotel")

    # Equal once no fact of the period is still on its way.
    own, group = await until(both, lambda pair: pair[0] == pair[1])
    assert own == group
    assert [u.unit for u in own.units] in (["hotel"], [])

    other = await fails(
        suite.insights(unit_team("hotel")).GetPointsLiability(
            pb.GetPointsLiabilityRequest(**period(start, end), unit="mall")
        )
    )
    assert (other.code, other.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    whole = await fails(
        suite.insights(unit_team("hotel")).GetPointsLiability(
            pb.GetPointsLiabilityRequest(**period(start, end))
        )
    )
    assert (whole.code, whole.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    nobody = await fails(
        suite.insights(
            unit_team("hotel").__class__(unit="hotel", client_id="till")
        ).GetPointsLiability(pb.GetPointsLiabilityRequest(**period(start, end), unit="hotel"))
    )
    assert (nobody.code, nobody.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    assert GROUP_TEAM.may("insights:group")


async def test_bad_periods_and_unknown_units_are_refused_with_the_field_named(
    suite: Suite,
) -> None:
    now = suite.clock()
    half = pb.GetPointsLiabilityRequest(start_time=timestamp(now))
    no_end = await fails(suite.insights().GetPointsLiability(half))
    assert (no_end.code, no_end.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["end_time"])
    no_dates = await fails(suite.insights().GetCohorts(pb.GetCohortsRequest()))
    assert no_dates.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(no_dates.fields) == ["end_time", "start_time"]
    backwards = await fails(
        suite.insights().GetUnitOverlap(pb.GetUnitOverlapRequest(**period(now, now)))
    )
    assert (backwards.code, backwards.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["end_time"])
    unknown = await fails(
        suite.insights().GetSpendShare(
            pb.GetSpendShareRequest(**period(now - timedelta(days=1), now), unit="no-such-unit")
        )
    )
    assert (unknown.code, unknown.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["unit"])


# Beyond every fact a test records: a period from here to there holds them all.
EVER = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))


def figures_of(found: pb.GetPointsLiabilityResponse) -> list[tuple[Any, ...]]:
    """Every unit's figures and the total's, points by expiry month included."""
    return [
        (
            u.unit,
            *(getattr(u, f) for f in FIGURES),
            u.points_outstanding,
            round(u.breakage, 12),
            tuple((e.month, e.points) for e in u.expiring),
        )
        for u in [*found.units, found.total]
    ]


async def as_of_now(suite: Suite, unit: str = "") -> pb.GetPointsLiabilityResponse:
    answer: pb.GetPointsLiabilityResponse = await suite.insights().GetPointsLiability(
        pb.GetPointsLiabilityRequest(unit=unit)
    )
    return answer


async def stored_and_computed(suite: Suite, unit: str = "") -> tuple[Any, Any]:
    """The liability as of now (the stored sums) and over every fact (computed from them)."""
    return figures_of(await as_of_now(suite, unit)), figures_of(await liability(suite, *EVER, unit))


async def test_the_liability_as_of_now_is_read_from_the_stored_sums(suite: Suite) -> None:
    """Without a period the liability is everything so far, read from `liability_counts`, kept
    by the facts' triggers: after earns, a redemption, an expiry, a merge and an erasure's
    forfeit it equals the liability computed from the facts over all time, group-wide and per
    unit, and it moved by what the history did."""
    points = suite.points
    before = await as_of_now(suite)
    shopper, absorbed, leaver = [await suite.member() for _ in range(3)]
    old = await points.earn(shopper.name, "mall", "70.00", occur="2023-04-10T10:00:00+08:00")
    await points.as_(ADMIN).RunExpiry(points_pb.RunExpiryRequest())
    await points.earn(shopper.name, "mall", "300.00")
    await points.earn(absorbed.name, "hotel", "200.00")
    await points.as_().RedeemPoints(
        points_pb.RedeemPointsRequest(
            member=shopper.name, request_id=uuid.uuid4().hex, unit="cinema", points=40
        )
    )
    await suite.identity().MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=shopper.name, absorbed=absorbed.name, request_id=uuid.uuid4().hex
        )
    )
    await points.earn(leaver.name, "hotel", "100.00")
    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=leaver.name, request_id=uuid.uuid4().hex)
    )

    def hotel(found: pb.GetPointsLiabilityResponse) -> pb.UnitLiability:
        return next((u for u in found.units if u.unit == "hotel"), pb.UnitLiability())

    # The erasure's forfeit is the last of the history to arrive.
    now = await until(
        lambda: as_of_now(suite),
        lambda f: hotel(f).points_forfeited > hotel(before).points_forfeited,
        30,
    )
    assert now.total.points_issued >= before.total.points_issued + old.posting.points
    assert now.total.points_expired >= before.total.points_expired + old.posting.points
    assert now.total.points_redeemed >= before.total.points_redeemed + 40
    for unit in ("", "mall", "hotel", "cinema"):

        def ask(unit: str = unit) -> Awaitable[tuple[Any, Any]]:
            return stored_and_computed(suite, unit)

        stored, computed = await until(ask, lambda pair: pair[0] == pair[1])
        assert stored == computed, unit
    mall = await as_of_now(suite, "mall")
    assert [u.unit for u in mall.units] == ["mall"]
    assert mall.total.points_outstanding == mall.units[0].points_outstanding
