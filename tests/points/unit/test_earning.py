"""Earning, refunds, confirmations and referrals, over the fake unit of work."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from loyalty_kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from loyalty_points.domain import events
from loyalty_points.domain.errors import (
    MemberNotActive,
    MemberNotFound,
    NothingToReverse,
    OrderAlreadyEarned,
    OrderNotFound,
)
from loyalty_points.domain.ledger import LotStatus, Posting, PostingKind
from loyalty_points.domain.money import Amount
from loyalty_points.domain.programme import Line
from loyalty_points.service_layer import consumers, earning, spending

from tests.points.unit.conftest import World


async def reverse(
    world: World, member: str, order_id: str, *line_ids: str, unit: str = "mall"
) -> Posting:
    async with world.uow as uow:
        posting, _ = await earning.reverse(
            uow, member, unit, order_id, list(line_ids), "refund", world.now
        )
        await uow.commit()
    return posting


async def test_an_earn_credits_available_points_and_lifetime(world: World) -> None:
    member = world.member()
    posting = await world.earn(member, "mall", "120.50")
    assert posting.points == 120
    assert await world.balance(member) == (120, 0)
    assert world.ledger.accounts[member].lifetime_earned == 120


async def test_a_hotel_stay_earns_pending_points_at_its_multiplier(world: World) -> None:
    member = world.member()
    posting = await world.earn(member, "hotel", "100")
    assert posting.pending and posting.points == 200
    assert await world.balance(member) == (0, 200)
    (lot,) = world.ledger.lots_of(member)
    assert lot.status is LotStatus.PENDING


async def test_an_earn_publishes_points_earned_with_the_spend(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "80", "20")
    (event,) = world.published(events.PointsEarned)
    assert isinstance(event, events.PointsEarned)
    assert (event.member_id, event.points, str(event.spend.value)) == (member, 100, "100")
    assert event.base_spend.currency == "CNY"


async def test_an_order_earns_once(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "10", order_id="A-1")
    with pytest.raises(OrderAlreadyEarned):
        await world.earn(member, "mall", "10", order_id="A-1")


async def test_the_same_order_id_earns_at_another_unit(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "10", order_id="A-1")
    await world.earn(member, "cinema", "10", order_id="A-1")
    assert await world.balance(member) == (25, 0)


async def test_a_member_identity_does_not_know_is_not_found(world: World) -> None:
    with pytest.raises(MemberNotFound):
        await world.earn("00000000-0000-0000-0000-000000000001", "mall", "10")


async def test_a_suspended_member_earns_nothing(world: World) -> None:
    member = world.member("suspended")
    with pytest.raises(MemberNotActive):
        await world.earn(member, "mall", "10")
    assert not world.ledger.postings_of(member)


async def test_a_purchase_in_the_future_is_refused(world: World) -> None:
    member = world.member()
    with pytest.raises(InvalidArgument):
        await world.earn(member, "mall", "10", occurred_at=world.now + timedelta(hours=1))


async def test_an_unknown_unit_is_a_field_violation(world: World) -> None:
    member = world.member()
    with pytest.raises(InvalidArgument):
        await world.earn(member, "spa", "10")


async def test_a_preview_writes_nothing(world: World) -> None:
    member = world.member()
    command = earning.Earn(member, "hotel", "", "", [], world.now)

    command = earning.Earn(
        member, "hotel", "", "", [Line("1", Amount("CNY", Decimal(50)))], world.now
    )
    async with world.uow as uow:
        earned, available_at = await earning.preview(uow, command, world.directory, world.now)
    assert earned.points == 100 and available_at == world.now + timedelta(days=7)
    assert member not in world.ledger.accounts


async def test_a_late_receipt_earns_at_the_tier_of_its_day(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "1")
    async with world.uow as uow:
        await consumers.on_tier_changed(uow, member, "gold", world.now, world.now)
        await uow.commit()
    world.later(days=1)
    late = await world.earn(member, "mall", "100", occurred_at=world.now - timedelta(days=2))
    today = await world.earn(member, "mall", "100")
    assert (late.points, today.points) == (100, 125)


async def test_a_full_refund_takes_back_every_point(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "60", "40", order_id="R-1")
    posting = await reverse(world, member, "R-1")
    assert posting.kind is PostingKind.REVERSE and posting.points == -100
    assert await world.balance(member) == (0, 0)
    assert world.ledger.accounts[member].lifetime_earned == 0


async def test_a_partial_refund_takes_back_its_lines_points(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "60", "40", order_id="R-2")
    posting = await reverse(world, member, "R-2", "2")
    assert posting.points == -40
    assert await world.balance(member) == (60, 0)


async def test_a_refund_publishes_the_refunded_spend(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "60", "40", order_id="R-3")
    await reverse(world, member, "R-3", "1")
    (event,) = world.published(events.PointsReversed)
    assert isinstance(event, events.PointsReversed)
    assert (event.points, str(event.base_spend.value)) == (60, "60")


async def test_a_refund_in_the_pending_window_cancels_pending_points(world: World) -> None:
    member = world.member()
    await world.earn(member, "hotel", "100", order_id="H-1")
    await reverse(world, member, "H-1", unit="hotel")
    assert await world.balance(member) == (0, 0)
    (lot,) = world.ledger.lots_of(member)
    assert lot.status is LotStatus.CANCELLED


async def test_points_spent_before_a_refund_are_unrecovered(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100", order_id="S-1")

    async with world.uow as uow:
        await spending.redeem(
            uow, member, "mall", "CHANNEL_POS", 70, "", world.directory, world.now
        )
        await uow.commit()
    posting = await reverse(world, member, "S-1")
    assert (posting.points, posting.unrecovered_points) == (-30, 70)
    assert await world.balance(member) == (0, 0)


async def test_a_refund_twice_is_already_reversed(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100", order_id="T-1")
    await reverse(world, member, "T-1")
    with pytest.raises(NothingToReverse):
        await reverse(world, member, "T-1")


async def test_a_refund_of_an_unknown_line_is_a_field_violation(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100", order_id="U-1")
    with pytest.raises(InvalidArgument):
        await reverse(world, member, "U-1", "9")


async def test_a_refund_of_another_members_order_is_not_found(world: World) -> None:
    member, other = world.member(), world.member()
    await world.earn(member, "mall", "100", order_id="V-1")
    await world.earn(other, "mall", "1")
    with pytest.raises(OrderNotFound):
        await reverse(world, other, "V-1")


async def test_confirming_an_order_makes_its_pending_points_available(world: World) -> None:
    member = world.member()
    await world.earn(member, "hotel", "100", order_id="C-1")
    async with world.uow as uow:
        activated, _ = await earning.confirm_order(uow, member, "hotel", "C-1", world.now)
        await uow.commit()
    assert activated == 200
    assert await world.balance(member) == (200, 0)
    assert world.published(events.PendingPointsActivated)


async def test_confirming_an_available_order_activates_nothing(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100", order_id="C-2")
    async with world.uow as uow:
        activated, _ = await earning.confirm_order(uow, member, "mall", "C-2", world.now)
    assert activated == 0


async def record_referral(world: World, member: str, referrer: str) -> tuple[str, bool]:
    async with world.uow as uow:
        found = await earning.record_referral(uow, member, referrer, world.directory, world.now)
        await uow.commit()
    return found


async def test_a_referral_pays_both_bonuses_with_the_first_earn(world: World) -> None:
    member, referrer = world.member(), world.member()
    assert await record_referral(world, member, referrer) == (referrer, False)
    await world.earn(member, "mall", "100")
    await world.earn(member, "mall", "100")
    assert await world.balance(member) == (400, 0)
    assert await world.balance(referrer) == (500, 0)
    assert len(world.published(events.ReferralRewarded)) == 1
    assert await record_referral(world, member, referrer) == (referrer, True)


async def test_no_one_refers_themselves(world: World) -> None:
    member = world.member()
    with pytest.raises(InvalidArgument):
        await record_referral(world, member, member)


async def test_a_referral_after_the_first_purchase_is_too_late(world: World) -> None:
    member, referrer = world.member(), world.member()
    await world.earn(member, "mall", "1")
    with pytest.raises(FailedPrecondition) as raised:
        await record_referral(world, member, referrer)
    assert raised.value.reason == "REFEREE_ALREADY_ACTIVE"


async def test_a_member_is_referred_by_one_member_only(world: World) -> None:
    member, first, second = world.member(), world.member(), world.member()
    await record_referral(world, member, first)
    with pytest.raises(AlreadyExists):
        await record_referral(world, member, second)


async def test_a_referrer_merged_since_is_paid_as_the_survivor(world: World) -> None:
    member, referrer, survivor = world.member(), world.member(), world.member()
    await record_referral(world, member, referrer)
    async with world.uow as uow:
        await consumers.on_member_merged(uow, survivor, referrer, world.now)
        await uow.commit()
    await world.earn(member, "mall", "1")
    assert await world.balance(survivor) == (500, 0)
    (event,) = world.published(events.ReferralRewarded)
    assert isinstance(event, events.ReferralRewarded) and event.referrer_member_id == survivor
