"""Earning: the worked example's rules (docs/worked-example.md) applied, explained, never twice."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty_devstack.demo import huayue_programme
from loyalty_kit.settings import Settings

from tests.points.conftest import ADMIN, Points, at, line, rid
from tests.support.events import publish
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def make_tier(
    points: Points, settings: Settings, member: str, tier: str, effective: datetime | None = None
) -> None:
    """Publish TierChanged as the tiers service would, and wait until points applied it."""
    event = tier_events.TierChanged(
        member_id=member.split("/")[1], from_tier="basic", to_tier=tier, reason="qualified"
    )
    event.effective_at.FromDatetime(effective or datetime.now(UTC))
    await publish(settings, "tiers", event)
    for _ in range(200):
        if (await points.balance(member)).tier == tier:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"points never learned that {member} is {tier}")


async def test_a_gold_member_earns_3086_points_for_a_hotel_stay(
    points: Points, settings: Settings
) -> None:
    member = await points.member()
    await make_tier(points, settings, member, "gold")
    response = await points.earn(member, "hotel", "1234.56")
    posting = response.posting
    assert posting.points == 3086
    assert posting.kind == pb.POSTING_KIND_EARN
    breakdown = posting.breakdown
    assert breakdown.qualifying_spend.amount == "1234.56"
    assert breakdown.base_rate == "1"
    assert [(f.source, f.multiplier) for f in breakdown.multipliers] == [
        ("unit:hotel", "2"),
        ("tier:gold", "1.25"),
    ]
    assert breakdown.exact_points == "3086.4"
    assert posting.programme_version == 1
    # Hotel points wait 7 days before they can be spent.
    assert posting.pending and response.balance.pending == 3086 and response.balance.available == 0


async def test_preview_computes_without_writing(points: Points) -> None:
    member = await points.member()
    preview = await points.as_().PreviewEarn(
        pb.PreviewEarnRequest(member=member, unit="estate", lines=[line("2000000.00")])
    )
    assert preview.breakdown.points == 200000  # estate x0.1
    assert not preview.pending
    assert (await points.balance(member)).available == 0


async def test_fractions_are_rounded_down_once_after_all_multipliers(points: Points) -> None:
    member = await points.member()
    # Three cinema lines of 0.99 x 1.5 = 1.485 each: 4.455 in all -> 4 points, not 3 x 1 = 3.
    response = await points.earn(member, "cinema", "0.99", "0.99", "0.99")
    assert response.posting.points == 4
    assert sorted(p.points for p in response.posting.breakdown.lines) == [1, 1, 2]


async def test_rules_in_force_when_an_offline_receipt_happened_apply(points: Points) -> None:
    member = await points.member()
    during = await points.earn(member, "mall", "100.00", occur="2025-11-11T12:00:00+08:00")
    after = await points.earn(member, "mall", "100.00", occur="2025-11-12T12:00:00+08:00")
    assert (during.posting.points, after.posting.points) == (200, 100)
    assert "campaign:double-11-2025" in [f.source for f in during.posting.breakdown.multipliers]
    bonus = await points.earn(member, "cinema", "10.00", occur="2025-06-02T12:00:00+08:00")
    assert bonus.posting.points == 115  # 10 x 1.5 = 15, plus the exclusive 100-point bonus
    assert [(b.source, b.points) for b in bonus.posting.breakdown.bonuses] == [
        ("campaign:cinema-opening-2025", 100)
    ]


async def test_a_receipt_recorded_late_earns_at_the_tier_held_when_it_happened(
    points: Points, settings: Settings
) -> None:
    """Silver since a month ago, gold since now: a receipt of three weeks ago earns at silver's
    x1.1, one of two months ago at basic's x1, today's at gold's x1.25 (the tier in force at
    the purchase, like the programme's rules)."""
    member = await points.member()
    month_ago = datetime.now(UTC) - timedelta(days=30)
    await make_tier(points, settings, member, "silver", effective=month_ago)
    await make_tier(points, settings, member, "gold")

    def ago(days: int) -> str:
        return (datetime.now(UTC) - timedelta(days=days)).isoformat()

    weeks = await points.earn(member, "mall", "100.00", occur=ago(21))
    months = await points.earn(member, "mall", "100.00", occur=ago(60))
    today = await points.earn(member, "mall", "100.00")
    assert (weeks.posting.points, months.posting.points, today.posting.points) == (110, 100, 125)
    assert [f.source for f in weeks.posting.breakdown.multipliers] == ["unit:mall", "tier:silver"]
    preview = await points.as_().PreviewEarn(
        pb.PreviewEarnRequest(
            member=member,
            unit="mall",
            lines=[line("100.00")],
            occur_time=at(ago(21)),
        )
    )
    assert preview.breakdown.points == 110


async def test_an_order_earns_once_even_with_another_request_id(points: Points) -> None:
    member = await points.member()
    order = f"POS-{uuid.uuid4().hex[:8]}"
    first = await points.earn(member, "mall", "88.00", order_id=order)
    failure = await fails(points.earn(member, "mall", "88.00", order_id=order))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "ORDER_ALREADY_EARNED",
    )
    assert (await points.balance(member)).available == first.posting.points == 88
    # The same order id at another unit is another order.
    assert (await points.earn(member, "cinema", "10.00", order_id=order)).posting.points == 15


async def test_a_retried_request_returns_the_first_answer(points: Points) -> None:
    member = await points.member()
    request = pb.EarnPointsRequest(
        member=member, request_id=rid(), unit="mall", order_id=f"o-{rid()}", lines=[line("50.00")]
    )
    first = await points.as_().EarnPoints(request)
    retry = await points.as_().EarnPoints(request)
    assert retry == first
    assert (await points.balance(member)).available == 50


@pytest.mark.parametrize(
    ("lines", "unit", "fields"),
    [
        ([line("0")], "mall", ["lines[0].amount.amount"]),
        ([line("-5.00")], "mall", ["lines[0].amount.amount"]),
        ([line("1.234")], "mall", ["lines[0].amount.amount"]),
        ([line("12", currency="JPY")], "mall", ["lines[0].amount.currency_code"]),
        ([line("12", currency="cny")], "mall", ["lines[0].amount.currency_code"]),
        ([line("10.00")], "spa", ["unit"]),
        ([], "mall", ["lines"]),
        ([line("1.00"), line("2.00")], "mall", ["lines[1].line_id"]),
        ([line("1.00", "a"), line("2.00", "b", "HKD")], "mall", ["lines"]),
        ([line("1.00", str(i)) for i in range(201)], "mall", ["lines"]),
    ],
)
async def test_bad_orders_are_refused_with_field_violations(
    points: Points, lines: list[pb.OrderLine], unit: str, fields: list[str]
) -> None:
    member = await points.member()
    request = pb.EarnPointsRequest(
        member=member, request_id=rid(), unit=unit, order_id="o-1", lines=lines
    )
    failure = await fails(points.as_().EarnPoints(request))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == fields


async def test_unknown_members_and_future_receipts(points: Points) -> None:
    failure = await fails(points.earn(f"members/{uuid.uuid4()}", "mall", "10.00"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "MEMBER_NOT_FOUND")
    failure = await fails(points.earn("members/not-a-member", "mall", "10.00"))
    assert failure.fields == ["member"]
    member = await points.member()
    failure = await fails(points.earn(member, "mall", "10.00", occur="2099-01-01T00:00:00Z"))
    assert failure.fields == ["occur_time"]


async def test_pending_hotel_points_become_available_on_confirmation_or_after_the_period(
    points: Points,
) -> None:
    member = await points.member()
    confirmed = await points.earn(member, "hotel", "100.00", order_id="stay-1")
    waiting = await points.earn(member, "hotel", "300.00", order_id="stay-2")
    assert (await points.balance(member)).pending == 800
    done = await points.as_().ConfirmOrder(
        pb.ConfirmOrderRequest(member=member, request_id=rid(), unit="hotel", order_id="stay-1")
    )
    assert done.activated_points == confirmed.posting.points == 200
    assert (done.balance.available, done.balance.pending) == (200, 600)

    admin = points.as_(ADMIN)
    await admin.RunPendingActivation(pb.RunPendingActivationRequest())
    assert (await points.balance(member)).pending == 600  # not due yet
    week_later = waiting.posting.available_time.ToDatetime().isoformat() + "Z"
    activated = await admin.RunPendingActivation(
        pb.RunPendingActivationRequest(as_of=at(week_later))
    )
    assert activated.points_activated >= 600
    balance = await points.balance(member)
    assert (balance.available, balance.pending) == (800, 0)


async def test_a_programme_currency_the_currency_data_does_not_know_is_refused(
    points: Points,
) -> None:
    """Amounts in it could be neither checked against nor written in its minor units."""
    programme = huayue_programme()
    programme.currencies.add(
        currency_code="XYZ", base_rate="1", point_value="0.01", base_currency_rate="1"
    )
    failure = await fails(
        points.as_(ADMIN).UpdateProgramme(
            pb.UpdateProgrammeRequest(programme=programme, reason="tests", request_id=rid())
        )
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"programme.currencies[{len(programme.currencies) - 1}].currency_code" in failure.fields
