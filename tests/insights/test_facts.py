"""Activity comes from every service that sees a member at a unit, not only from points: a
benefit used (benefits' BenefitConsumed, undone by BenefitReleased) and a past order a unit
imported as activity (identity's LegacyOrdersImported, mode ACTIVITY_ONLY) count as visits, the
order's amount as spend; a REPLAY import's orders are left to points' earns. Events published on
the real bus, in a past period of this test's own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from loyalty.benefits.v1 import events_pb2 as benefits_events
from loyalty.common.v1 import money_pb2
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import order_import_pb2
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_kit.timestamps import timestamp

from tests.insights.conftest import Suite, period, until
from tests.support.events import publish

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A period of 2020 (the cross-unit tests use 2021-2022; no other test earns in 2020).
START = datetime(2020, 8, 3, 7, 13, 5, tzinfo=UTC)
END = START + timedelta(days=20)


def order(member_id: str, amount: str, days: int) -> identity_events.ImportedOrder:
    return identity_events.ImportedOrder(
        member_id=member_id,
        order_id=f"old-{uuid.uuid4().hex[:10]}",
        amount=money_pb2.Money(currency_code="CNY", amount=amount),
        occurred_at=timestamp(START + timedelta(days=days)),
    )


async def test_benefits_used_and_imported_orders_are_activity_at_their_units(
    suite: Suite,
) -> None:
    settings = suite.points.service.context.settings
    member = await suite.member()
    await suite.points.earn(
        member.name, "mall", "100.00", occur=(START + timedelta(days=1)).isoformat()
    )
    consumption = uuid.uuid4().hex
    await publish(
        settings,
        "benefits",
        benefits_events.BenefitConsumed(
            member_id=member.id,
            consumption_id=consumption,
            benefit_code="lounge",
            unit="hotel",
            order_id="",
            occurred_at=timestamp(START + timedelta(days=2)),
        ),
    )
    for mode, amount in (
        (order_import_pb2.ORDER_IMPORT_MODE_ACTIVITY_ONLY, "250.00"),
        (order_import_pb2.ORDER_IMPORT_MODE_REPLAY, "999.00"),  # points earns it: counted once
    ):
        await publish(
            settings,
            "identity",
            identity_events.LegacyOrdersImported(
                order_import=f"orderImports/{uuid.uuid4().hex[:12]}",
                unit="cinema",
                mode=mode,
                orders=[order(member.id, amount, 3)],
                imported_at=timestamp(datetime.now(UTC)),
            ),
        )
    insights = suite.insights()
    ask = pb.GetUnitOverlapRequest(**period(START, END))

    def units(found: pb.GetUnitOverlapResponse) -> set[str]:
        return {p.unit for p in found.pairs if p.unit == p.other_unit}

    found = await until(lambda: insights.GetUnitOverlap(ask), lambda f: len(units(f)) == 3)
    assert units(found) == {"mall", "hotel", "cinema"}
    expected = {"cinema": Decimal("1249.00"), "mall": Decimal("100.00")}

    def spent(found: pb.GetSpendShareResponse) -> dict[str, Decimal]:
        return {s.unit: Decimal(s.spend.amount) for s in found.units}

    spend = await until(
        lambda: insights.GetSpendShare(pb.GetSpendShareRequest(**period(START, END))),
        lambda f: spent(f) == expected,
    )
    assert spent(spend) == expected

    await publish(
        settings,
        "benefits",
        benefits_events.BenefitReleased(
            member_id=member.id,
            consumption_id=consumption,
            benefit_code="lounge",
            unit="hotel",
            reason="checkout cancelled",
            occurred_at=timestamp(datetime.now(UTC)),
        ),
    )
    released = await until(lambda: insights.GetUnitOverlap(ask), lambda f: len(units(f)) == 2)
    assert units(released) == {"mall", "cinema"}
