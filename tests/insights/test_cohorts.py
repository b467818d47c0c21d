"""Registration cohorts and programme health from a generated history whose answers are known:
registrations, an import, activity (imported orders, benefits and coupons used), tier changes
and a merge published on the real bus, dated in early 2013 (no other test has facts that early),
read over gRPC and through the gateway; a unit's team reads its own unit's figures only; bad
periods and unknown units are refused with the field named."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from loyalty.benefits.v1 import events_pb2 as benefits_events
from loyalty.common.v1 import money_pb2
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import order_import_pb2
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty.tiers.v1 import events_pb2 as tiers_events
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.gateway.conftest import Gateway
from tests.insights.conftest import Suite, period, unit_team, until
from tests.support.events import publish
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

START = datetime(2013, 1, 5, 6, 11, 7, tzinfo=UTC)
END = datetime(2013, 4, 5, 6, 11, 7, tzinfo=UTC)


def on(month: int, day: int, year: int = 2013) -> datetime:
    return datetime(year, month, day, 10, 23, 41, tzinfo=UTC)


class History:
    """Events of this test's own members, published as their services publish them."""

    def __init__(self, suite: Suite) -> None:
        self.settings = suite.points.service.context.settings
        self.tag = uuid.uuid4().hex[:10]

    def member(self, name: str) -> str:
        return f"cohorts-{self.tag}-{name}"

    async def publish(self, service: str, event: Message) -> None:
        await publish(self.settings, service, event)

    async def registered(self, name: str, unit: str, when: datetime) -> None:
        await self.publish(
            "identity",
            identity_events.MemberRegistered(
                member_id=self.member(name), unit=unit, registered_at=timestamp(when)
            ),
        )

    async def imported(self, name: str, unit: str, when: datetime) -> None:
        await self.publish(
            "identity",
            identity_events.MembersImported(
                member_import=f"memberImports/{uuid.uuid4().hex[:12]}",
                unit=unit,
                members=[
                    identity_events.ImportedMember(
                        member_id=self.member(name), legacy_key=uuid.uuid4().hex, created=True
                    )
                ],
                imported_at=timestamp(when),
            ),
        )

    async def ordered(self, name: str, unit: str, when: datetime) -> None:
        await self.publish(
            "identity",
            identity_events.LegacyOrdersImported(
                order_import=f"orderImports/{uuid.uuid4().hex[:12]}",
                unit=unit,
                mode=order_import_pb2.ORDER_IMPORT_MODE_ACTIVITY_ONLY,
                orders=[
                    identity_events.ImportedOrder(
                        member_id=self.member(name),
                        order_id=f"old-{uuid.uuid4().hex[:10]}",
                        amount=money_pb2.Money(currency_code="CNY", amount="10.00"),
                        occurred_at=timestamp(when),
                    )
                ],
                imported_at=timestamp(datetime.now(UTC)),
            ),
        )

    async def used_benefit(self, name: str, unit: str, when: datetime) -> str:
        consumption = uuid.uuid4().hex
        await self.publish(
            "benefits",
            benefits_events.BenefitConsumed(
                member_id=self.member(name),
                consumption_id=consumption,
                benefit_code="lounge",
                unit=unit,
                occurred_at=timestamp(when),
            ),
        )
        return consumption

    async def released(self, name: str, unit: str, consumption: str) -> None:
        await self.publish(
            "benefits",
            benefits_events.BenefitReleased(
                member_id=self.member(name),
                consumption_id=consumption,
                benefit_code="lounge",
                unit=unit,
                reason="checkout cancelled",
                occurred_at=timestamp(datetime.now(UTC)),
            ),
        )

    async def used_coupon(self, name: str, unit: str, when: datetime) -> None:
        await self.publish(
            "benefits",
            benefits_events.CouponRedeemed(
                member_id=self.member(name),
                code=f"C{uuid.uuid4().hex[:10]}",
                template_code="welcome",
                unit=unit,
                order_id=uuid.uuid4().hex,
                occurred_at=timestamp(when),
            ),
        )

    async def tier(self, name: str, before: str, after: str, when: datetime) -> None:
        await self.publish(
            "tiers",
            tiers_events.TierChanged(
                member_id=self.member(name),
                from_tier=before,
                to_tier=after,
                reason="qualified",
                effective_at=timestamp(when),
            ),
        )

    async def merged(self, survivor: str, absorbed: str, when: datetime) -> None:
        await self.publish(
            "identity",
            identity_events.MemberMerged(
                survivor_member_id=self.member(survivor),
                absorbed_member_id=self.member(absorbed),
                merged_at=timestamp(when),
            ),
        )


async def generate(suite: Suite) -> None:
    """The history (2013; the period is 5 January to 5 April):
    - e joined the mall in December 2012 (silver from 25 December, gold from 15 March), used a
      coupon at the mall on 7 January;
    - a joined the mall on 10 January (gold from 20 January), bought there 12 January and
      3 February, used two benefits at the hotel in February;
    - b joined the hotel on 15 January, bought there 20 January, 1 March and 10 April (after the
      period);
    - c joined the mall on 8 February (silver then), bought there 9 February, used a benefit
      there 5 March and another 6 March, released;
    - d was imported at the cinema on 20 February, bought there 3 March;
    - f joined the cinema on 2 March, bought there 4 March, and was merged into a.
    """
    h = History(suite)
    await h.registered("e", "mall", on(12, 20, 2012))
    await h.tier("e", "", "silver", on(12, 25, 2012))
    await h.used_coupon("e", "mall", on(1, 7))
    await h.tier("e", "silver", "gold", on(3, 15))
    await h.registered("a", "mall", on(1, 10))
    await h.ordered("a", "mall", on(1, 12))
    await h.tier("a", "", "gold", on(1, 20))
    await h.ordered("a", "mall", on(2, 3))
    await h.used_benefit("a", "hotel", on(2, 10))
    await h.used_benefit("a", "hotel", on(2, 11))
    await h.registered("b", "hotel", on(1, 15))
    for when in (on(1, 20), on(3, 1), on(4, 10)):
        await h.ordered("b", "hotel", when)
    await h.registered("c", "mall", on(2, 8))
    await h.tier("c", "", "silver", on(2, 8))
    await h.ordered("c", "mall", on(2, 9))
    await h.used_benefit("c", "mall", on(3, 5))
    await h.released("c", "mall", await h.used_benefit("c", "mall", on(3, 6)))
    await h.imported("d", "cinema", on(2, 20))
    await h.ordered("d", "cinema", on(3, 3))
    await h.registered("f", "cinema", on(3, 2))
    await h.ordered("f", "cinema", on(3, 4))
    await h.merged("a", "f", on(3, 20))


def cohorts_of(found: pb.GetCohortsResponse) -> dict[str, Any]:
    return {
        c.month: (
            c.members,
            c.imported_members,
            [(m.month, m.offset, m.active_members, round(m.retention, 4)) for m in c.months],
        )
        for c in found.cohorts
    }


def health_of(found: pb.GetProgrammeHealthResponse) -> list[Any]:
    return [
        (
            m.month,
            m.members,
            m.active_members,
            round(m.active_rate, 4),
            m.redeeming_members,
            round(m.redemption_rate, 4),
            {t.tier: t.members for t in m.tiers},
            {b.tier: (b.uses, b.members) for b in m.benefits},
        )
        for m in found.months
    ]


COHORTS = {
    # a (f's March activity counts for a, its survivor) and b
    "2013-01": (
        2,
        0,
        [
            ("2013-01", 0, 2, 1.0),
            ("2013-02", 1, 1, 0.5),
            ("2013-03", 2, 2, 1.0),
            ("2013-04", 3, 0, 0.0),
        ],
    ),
    # c and d (imported)
    "2013-02": (2, 1, [("2013-02", 0, 1, 0.5), ("2013-03", 1, 2, 1.0), ("2013-04", 2, 0, 0.0)]),
}

HEALTH = [
    # e, a, b registered and active; e used a coupon
    ("2013-01", 3, 3, 1.0, 1, 0.3333, {"gold": 1, "silver": 1}, {}),
    # + c, d; a and c active, a used benefits (gold)
    ("2013-02", 5, 2, 0.4, 1, 0.5, {"gold": 1, "silver": 2}, {"gold": (2, 1)}),
    # b, a (as f), c, d active; c used a benefit (silver; the other released); e turned gold
    ("2013-03", 5, 4, 0.8, 1, 0.25, {"gold": 2, "silver": 1}, {"silver": (1, 1)}),
    ("2013-04", 5, 0, 0.0, 0, 0.0, {"gold": 2, "silver": 1}, {}),
]


async def test_cohorts_and_programme_health_have_the_answers_of_their_history(
    suite: Suite,
) -> None:
    await generate(suite)
    insights = suite.insights()
    cohorts = await until(
        lambda: insights.GetCohorts(pb.GetCohortsRequest(**period(START, END))),
        lambda f: cohorts_of(f) == COHORTS,
        seconds=40,
    )
    assert cohorts_of(cohorts) == COHORTS
    health = await until(
        lambda: insights.GetProgrammeHealth(pb.GetProgrammeHealthRequest(**period(START, END))),
        lambda f: health_of(f) == HEALTH,
        seconds=40,
    )
    assert health_of(health) == HEALTH

    # The mall's: members who joined there (a, c; e before the period), activity there.
    mall_cohorts = await insights.GetCohorts(
        pb.GetCohortsRequest(**period(START, END), unit="mall")
    )
    assert cohorts_of(mall_cohorts) == {
        "2013-01": (
            1,
            0,
            [
                ("2013-01", 0, 1, 1.0),
                ("2013-02", 1, 1, 1.0),
                ("2013-03", 2, 0, 0.0),
                ("2013-04", 3, 0, 0.0),
            ],
        ),
        "2013-02": (1, 0, [("2013-02", 0, 1, 1.0), ("2013-03", 1, 1, 1.0), ("2013-04", 2, 0, 0.0)]),
    }
    mall = await suite.insights(unit_team("mall")).GetProgrammeHealth(
        pb.GetProgrammeHealthRequest(**period(START, END), unit="mall")
    )
    assert health_of(mall)[:3] == [
        ("2013-01", 2, 2, 1.0, 1, 0.5, {"gold": 1, "silver": 1}, {}),
        ("2013-02", 3, 2, 0.6667, 0, 0.0, {"gold": 1, "silver": 2}, {}),
        ("2013-03", 3, 1, 0.3333, 1, 1.0, {"gold": 2, "silver": 1}, {"silver": (1, 1)}),
    ]

    # A period of one month in the middle: the cohort of January is outside it.
    february = await insights.GetCohorts(
        pb.GetCohortsRequest(**period(on(2, 1), datetime(2013, 3, 1, tzinfo=UTC)))
    )
    assert cohorts_of(february) == {"2013-02": (2, 1, [("2013-02", 0, 1, 0.5)])}


async def test_a_unit_reads_its_own_cohorts_and_health_only(suite: Suite) -> None:
    hotel = suite.insights(unit_team("hotel"))
    own = await hotel.GetCohorts(pb.GetCohortsRequest(**period(START, END), unit="hotel"))
    assert all(c.month.startswith("2013") for c in own.cohorts)
    other = await fails(
        hotel.GetProgrammeHealth(pb.GetProgrammeHealthRequest(**period(START, END), unit="mall"))
    )
    assert (other.code, other.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    whole = await fails(hotel.GetCohorts(pb.GetCohortsRequest(**period(START, END))))
    assert (whole.code, whole.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")


async def test_bad_periods_and_unknown_units_are_refused_with_the_field_named(
    suite: Suite,
) -> None:
    insights = suite.insights()
    no_dates = await fails(insights.GetCohorts(pb.GetCohortsRequest()))
    assert no_dates.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(no_dates.fields) == ["end_time", "start_time"]
    backwards = await fails(
        insights.GetProgrammeHealth(pb.GetProgrammeHealthRequest(**period(END, START)))
    )
    assert (backwards.code, backwards.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["end_time"])
    unknown = await fails(
        insights.GetProgrammeHealth(
            pb.GetProgrammeHealthRequest(**period(START, END), unit="no-such-unit")
        )
    )
    assert (unknown.code, unknown.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["unit"])


async def test_cohorts_and_health_over_http_through_the_gateway(
    suite: Suite, gateway_service: RunningService
) -> None:
    gateway = Gateway(
        gateway_service, f"http://127.0.0.1:{gateway_service.context.settings.gateway_http_port}"
    )
    params = {
        "startTime": START.isoformat().replace("+00:00", "Z"),
        "endTime": (START + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
    }
    async with await gateway.session("group", "insights:group") as http:
        health = await http.get("/v1/insights/programmeHealth", params=params)
        assert health.status_code == 200, health.text
        assert [m["month"] for m in health.json()["months"]] == ["2013-01"]
        cohorts = await http.get("/v1/insights/cohorts", params=params)
        assert cohorts.status_code == 200, cohorts.text
        bad = await http.get("/v1/insights/cohorts", params={"startTime": params["startTime"]})
        assert bad.status_code == 400, bad.text
    async with await gateway.session("mall", "insights:read") as mall:
        group = await mall.get("/v1/insights/cohorts", params=params)
        assert group.status_code == 403, group.text
