"""Redemptions, cancellations, adjustments, transfers and partner exchanges, over the fake
unit of work."""

from __future__ import annotations

from datetime import timedelta

import pytest
from loyalty_kit.caller import UnitMismatch
from loyalty_kit.errors import FailedPrecondition, InvalidArgument
from loyalty_points.domain import events
from loyalty_points.domain.errors import (
    LimitExceeded,
    MemberNotActive,
    PartnerReferenceUsed,
    PostingNotFound,
    RedemptionAlreadyCancelled,
)
from loyalty_points.domain.ledger import InsufficientPoints, LotStatus, Posting, PostingKind
from loyalty_points.service_layer import jobs, moves, spending

from tests.points.unit.conftest import World


async def redeem(world: World, member: str, points: int, unit: str = "mall") -> Posting:
    async with world.uow as uow:
        posting, _, _ = await spending.redeem(
            uow, member, unit, "CHANNEL_POS", points, "", world.directory, world.now
        )
        await uow.commit()
    return posting


async def cancel(world: World, member: str, posting_id: str, unit: str | None = None) -> int:
    async with world.uow as uow:
        _, expired, _ = await spending.cancel_redemption(
            uow, member, posting_id, "changed mind", world.now, unit
        )
        await uow.commit()
    return expired


async def adjust(world: World, member: str, points: int, reason: str = "goodwill") -> Posting:
    async with world.uow as uow:
        posting, _ = await spending.adjust(
            uow, member, "mall", points, reason, world.directory, world.now
        )
        await uow.commit()
    return posting


async def transfer(world: World, sender: str, receiver: str, points: int) -> Posting:
    async with world.uow as uow:
        posting, _ = await moves.transfer(
            uow, sender, receiver, points, "gift", world.directory, world.now
        )
        await uow.commit()
    return posting


async def to_partner(world: World, member: str, points: int) -> tuple[Posting, int]:
    async with world.uow as uow:
        posting, units, _ = await moves.exchange_to_partner(
            uow, member, "skyair", points, "SA-123", world.directory, world.now
        )
        await uow.commit()
    return posting, units


async def from_partner(world: World, member: str, units: int, reference: str) -> Posting:
    async with world.uow as uow:
        posting, _ = await moves.exchange_from_partner(
            uow, member, "skyair", units, reference, world.directory, world.now
        )
        await uow.commit()
    return posting


async def reverse_exchange(world: World, member: str, posting_id: str) -> Posting:
    async with world.uow as uow:
        posting, _, _ = await moves.reverse_partner_exchange(
            uow, member, posting_id, "undo", world.now
        )
        await uow.commit()
    return posting


async def test_a_redemption_takes_the_soonest_expiring_points_first(world: World) -> None:
    member = world.member()
    await world.earn(member, "cinema", "100", occurred_at=world.now - timedelta(days=400))
    await world.earn(member, "mall", "100")
    await redeem(world, member, 120)
    remaining = sorted((lot.earned_unit, lot.remaining) for lot in world.ledger.lots_of(member))
    assert remaining == [("cinema", 30), ("mall", 100)]


async def test_a_redemption_beyond_the_balance_is_refused(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100")
    with pytest.raises(InsufficientPoints):
        await redeem(world, member, 101)
    assert await world.balance(member) == (100, 0)


async def test_pending_points_cannot_be_redeemed(world: World) -> None:
    member = world.member()
    await world.earn(member, "hotel", "100")
    with pytest.raises(InsufficientPoints):
        await redeem(world, member, 1)


async def test_a_redemption_at_an_unknown_unit_is_a_field_violation(world: World) -> None:
    member = world.member()
    with pytest.raises(InvalidArgument):
        await redeem(world, member, 1, unit="spa")


async def test_a_redemption_of_no_points_is_a_field_violation(world: World) -> None:
    with pytest.raises(InvalidArgument):
        await redeem(world, world.member(), 0)


async def test_a_redemption_publishes_points_redeemed(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100")
    posting = await redeem(world, member, 40)
    (event,) = world.published(events.PointsRedeemed)
    assert isinstance(event, events.PointsRedeemed)
    assert (event.posting_id, event.points) == (posting.posting_id, 40)


async def test_a_cancelled_redemption_returns_points_to_their_lots(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100")
    posting = await redeem(world, member, 60)
    assert await cancel(world, member, posting.posting_id) == 0
    assert await world.balance(member) == (100, 0)
    assert [lot.remaining for lot in world.ledger.lots_of(member)] == [100]
    assert world.published(events.RedemptionCancelled)


async def test_a_redemption_is_cancelled_once(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100")
    posting = await redeem(world, member, 60)
    await cancel(world, member, posting.posting_id)
    with pytest.raises(RedemptionAlreadyCancelled):
        await cancel(world, member, posting.posting_id)


async def test_only_a_redemption_can_be_cancelled(world: World) -> None:
    member = world.member()
    earned = await world.earn(member, "mall", "100")
    with pytest.raises(PostingNotFound):
        await cancel(world, member, earned.posting_id)


async def test_a_unit_cancels_only_its_own_redemptions(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100")
    posting = await redeem(world, member, 60)
    with pytest.raises(UnitMismatch):
        await cancel(world, member, posting.posting_id, unit="cinema")


async def test_points_of_a_lot_expired_since_expire_again_at_once(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100", occurred_at=world.now - timedelta(days=720))
    posting = await redeem(world, member, 60)
    world.later(days=60)
    async with world.uow as uow:
        await jobs.expire_chunk(uow, world.now, 50, world.now)
        await uow.commit()
    assert await cancel(world, member, posting.posting_id) == 60
    assert await world.balance(member) == (0, 0)
    assert len(world.ledger.postings_of(member, PostingKind.EXPIRE)) == 2


async def test_an_adjustment_up_credits_a_new_lot(world: World) -> None:
    member = world.member()
    posting = await adjust(world, member, 50)
    assert posting.kind is PostingKind.ADJUST
    assert await world.balance(member) == (50, 0)
    assert world.published(events.PointsAdjusted)


async def test_an_adjustment_down_takes_points(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100")
    await adjust(world, member, -30)
    assert await world.balance(member) == (70, 0)


async def test_an_adjustment_needs_a_reason(world: World) -> None:
    with pytest.raises(InvalidArgument):
        await adjust(world, world.member(), 10, reason=" ")


async def test_a_suspended_members_points_may_be_adjusted(world: World) -> None:
    member = world.member("suspended")
    await adjust(world, member, 10)
    assert await world.balance(member) == (10, 0)


async def test_an_erased_members_points_may_not_be_adjusted(world: World) -> None:
    member = world.member("erased")
    with pytest.raises(MemberNotActive):
        await adjust(world, member, 10)


async def test_a_transfer_moves_lots_with_their_unit_and_expiry(world: World) -> None:
    sender, receiver = world.member(), world.member()
    await world.earn(sender, "cinema", "100")
    await transfer(world, sender, receiver, 60)
    assert await world.balance(sender) == (90, 0)
    assert await world.balance(receiver) == (60, 0)
    (sent,) = world.ledger.lots_of(sender)
    (received,) = world.ledger.lots_of(receiver)
    assert (received.earned_unit, received.expires_at) == ("cinema", sent.expires_at)
    assert world.published(events.PointsTransferred)


async def test_a_transfer_to_oneself_is_refused(world: World) -> None:
    member = world.member()
    with pytest.raises(InvalidArgument):
        await transfer(world, member, member, 1)


async def test_a_transfer_above_the_limit_is_refused(world: World) -> None:
    sender, receiver = world.member(), world.member()
    with pytest.raises(LimitExceeded):
        await transfer(world, sender, receiver, 20_001)


async def test_transfers_are_capped_per_day(world: World) -> None:
    sender, receiver = world.member(), world.member()
    await adjust(world, sender, 60_000)
    await transfer(world, sender, receiver, 20_000)
    await transfer(world, sender, receiver, 20_000)
    with pytest.raises(LimitExceeded) as raised:
        await transfer(world, sender, receiver, 10_001)
    assert raised.value.metadata["sent_today"] == "40000"


async def test_transfers_off_in_the_programme_are_refused(world: World) -> None:
    world.ledger.programmes[-1].transfer_max_per_transfer = 0
    with pytest.raises(FailedPrecondition) as raised:
        await transfer(world, world.member(), world.member(), 1)
    assert raised.value.reason == "TRANSFERS_DISABLED"


async def test_a_transfer_to_a_suspended_member_is_refused(world: World) -> None:
    sender, receiver = world.member(), world.member("suspended")
    await adjust(world, sender, 100)
    with pytest.raises(MemberNotActive):
        await transfer(world, sender, receiver, 10)


async def test_points_exchanged_to_a_partner_become_its_units(world: World) -> None:
    member = world.member()
    await adjust(world, member, 5_000)
    posting, units = await to_partner(world, member, 2_000)
    assert (posting.points, units) == (-2_000, 200)
    assert posting.unit == "partner:skyair"
    assert await world.balance(member) == (3_000, 0)


async def test_an_exchange_below_the_partners_minimum_is_refused(world: World) -> None:
    member = world.member()
    await adjust(world, member, 5_000)
    with pytest.raises(InvalidArgument):
        await to_partner(world, member, 990)


async def test_an_exchange_in_part_units_is_refused(world: World) -> None:
    member = world.member()
    await adjust(world, member, 5_000)
    with pytest.raises(InvalidArgument):
        await to_partner(world, member, 1_005)


async def test_a_partners_units_convert_in_once_per_reference(world: World) -> None:
    member = world.member()
    posting = await from_partner(world, member, 100, "REF-1")
    assert posting.points == 800
    with pytest.raises(PartnerReferenceUsed):
        await from_partner(world, member, 100, "REF-1")
    assert await world.balance(member) == (800, 0)


async def test_an_exchange_out_reversed_returns_the_points(world: World) -> None:
    member = world.member()
    await adjust(world, member, 5_000)
    posting, _ = await to_partner(world, member, 2_000)
    reversal = await reverse_exchange(world, member, posting.posting_id)
    assert reversal.points == 2_000
    assert await world.balance(member) == (5_000, 0)


async def test_an_exchange_in_reversed_takes_the_points_back(world: World) -> None:
    member = world.member()
    posting = await from_partner(world, member, 100, "REF-2")
    reversal = await reverse_exchange(world, member, posting.posting_id)
    assert reversal.points == -800
    assert await world.balance(member) == (0, 0)
    (lot,) = world.ledger.lots_of(member)
    assert lot.status is LotStatus.OPEN and lot.remaining == 0


async def test_an_exchange_is_reversed_once(world: World) -> None:
    member = world.member()
    posting = await from_partner(world, member, 100, "REF-3")
    await reverse_exchange(world, member, posting.posting_id)
    with pytest.raises(FailedPrecondition) as raised:
        await reverse_exchange(world, member, posting.posting_id)
    assert raised.value.reason == "ALREADY_REVERSED"
