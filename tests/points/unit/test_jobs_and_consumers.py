"""The scheduled jobs, other services' events, the settlement and the programme, over the
fake unit of work."""

from __future__ import annotations

from datetime import timedelta

import pytest
from loyalty_kit.errors import InvalidArgument
from loyalty_kit.jobs import Chunks
from loyalty_points.domain import events
from loyalty_points.domain.ledger import LotStatus, PostingKind
from loyalty_points.service_layer import consumers, jobs, programmes, settlement, spending
from loyalty_points.service_layer.ports import PointsWork

from tests.points.unit.conftest import World, programme


async def test_pending_points_become_available_after_their_days(world: World) -> None:
    member = world.member()
    await world.earn(member, "hotel", "100")
    world.later(days=8)
    total = await jobs.run_in_chunks(
        lambda: world.uow,
        lambda uow, size: jobs.activate_pending_chunk(uow, world.now, size, world.now),
        Chunks(50),
    )
    assert (total.items, total.points) == (1, 200)
    assert await world.balance(member) == (200, 0)
    assert not world.ledger.postings_of(member, PostingKind.EARN)[0].pending


async def test_lots_expire_at_the_end_of_their_month_once(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100", occurred_at=world.now - timedelta(days=800))
    await world.earn(member, "mall", "50")
    for _ in range(2):
        total = await jobs.run_in_chunks(
            lambda: world.uow,
            lambda uow, size: jobs.expire_chunk(uow, world.now, size, world.now),
            Chunks(50),
        )
    assert (total.members, total.points) == (0, 0)
    assert await world.balance(member) == (50, 0)
    (event,) = world.published(events.PointsExpired)
    assert isinstance(event, events.PointsExpired) and event.points == 100


async def test_the_expiry_job_runs_chunk_after_chunk(world: World) -> None:
    members = [world.member() for _ in range(3)]
    for member in members:
        await world.earn(member, "mall", "10", occurred_at=world.now - timedelta(days=800))
    total = await jobs.run_in_chunks(
        lambda: world.uow,
        lambda uow, size: jobs.expire_chunk(uow, world.now, size, world.now),
        Chunks(2),
    )
    assert (total.members, total.items, total.points) == (3, 3, 30)


async def test_the_expiry_job_stops_at_its_limit_and_counts_what_is_left(world: World) -> None:
    members = [world.member() for _ in range(5)]
    for member in members:
        await world.earn(member, "mall", "10", occurred_at=world.now - timedelta(days=800))

    async def expire(uow: PointsWork, size: int) -> jobs.JobResult:
        return await jobs.expire_chunk(uow, world.now, size, world.now)

    assert await jobs.members_due_expiry(world.uow, world.now) == 5

    first = await jobs.run_in_chunks(lambda: world.uow, expire, Chunks(2, limit=3))
    assert (first.members, first.done) == (3, False)  # a chunk of 2, then one cut to 1
    assert await jobs.members_due_expiry(world.uow, world.now) == 2
    rest = await jobs.run_in_chunks(lambda: world.uow, expire, Chunks(2, limit=3))
    assert (rest.members, rest.done) == (2, True)
    assert await jobs.members_due_expiry(world.uow, world.now) == 0


async def state(world: World, member: str, name: str) -> None:
    async with world.uow as uow:
        await consumers.on_member_state(uow, member, name, world.now)
        await uow.commit()


async def test_a_suspension_stops_earning_and_a_reactivation_resumes_it(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "1")
    await state(world, member, "suspended")
    assert world.ledger.accounts[member].state == "suspended"
    await state(world, member, "active")
    await world.earn(member, "mall", "1")


async def test_an_erased_member_stays_erased(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "1")
    async with world.uow as uow:
        await consumers.on_member_erased(uow, member, world.now)
        await uow.commit()
    await state(world, member, "active")
    assert world.ledger.accounts[member].state == "erased"


async def erase(world: World, member: str) -> int:
    async with world.uow as uow:
        forfeited = await consumers.on_member_erased(uow, member, world.now)
        await uow.commit()
    return forfeited


async def test_erasure_forfeits_available_and_pending_points_once(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100")
    await world.earn(member, "hotel", "50")
    assert await erase(world, member) == 200
    assert await erase(world, member) == 0
    assert await world.balance(member) == (0, 0)
    assert len(world.ledger.postings_of(member, PostingKind.ERASURE_FORFEIT)) == 1
    statuses = sorted(lot.status.value for lot in world.ledger.lots_of(member))
    assert statuses == ["cancelled", "open"]


async def test_an_unknown_member_erased_gets_an_erased_account(world: World) -> None:
    member = world.member()
    assert await erase(world, member) == 0
    assert world.ledger.accounts[member].state == "erased"


async def merge(world: World, survivor: str, absorbed: str) -> None:
    async with world.uow as uow:
        await consumers.on_member_merged(uow, survivor, absorbed, world.now)
        await uow.commit()


async def unmerge(world: World, survivor: str, restored: str) -> None:
    async with world.uow as uow:
        await consumers.on_member_unmerged(uow, survivor, restored, world.now)
        await uow.commit()


async def test_a_merge_moves_balances_lots_and_orders_once(world: World) -> None:
    survivor, absorbed = world.member(), world.member()
    await world.earn(survivor, "mall", "10")
    await world.earn(absorbed, "mall", "100", order_id="M-1")
    await world.earn(absorbed, "hotel", "50")
    await merge(world, survivor, absorbed)
    await merge(world, survivor, absorbed)
    assert await world.balance(survivor) == (110, 100)
    assert await world.balance(absorbed) == (0, 0)
    assert world.ledger.accounts[absorbed].merged_into == survivor
    assert world.ledger.orders[("mall", "M-1")].member_id == survivor
    assert len(world.ledger.postings_of(survivor, PostingKind.MERGE_IN)) == 1


async def test_an_unmerge_gives_back_what_is_left_of_the_restored_members_lots(
    world: World,
) -> None:
    survivor, restored = world.member(), world.member()
    await world.earn(restored, "mall", "100", order_id="M-2")  # the older lot: spent first
    await world.earn(restored, "hotel", "50")
    world.later(minutes=1)
    await world.earn(survivor, "mall", "10")
    await merge(world, survivor, restored)
    async with world.uow as uow:
        await spending.redeem(uow, survivor, "mall", "POS", 40, "", world.directory, world.now)
        await uow.commit()
    await unmerge(world, survivor, restored)
    await unmerge(world, survivor, restored)
    assert await world.balance(restored) == (60, 100)
    assert await world.balance(survivor) == (10, 0)
    assert world.ledger.accounts[restored].state == "active"
    assert world.ledger.orders[("mall", "M-2")].member_id == restored
    pending = [lot for lot in world.ledger.lots_of(restored) if lot.status is LotStatus.PENDING]
    assert pending and pending[0].available_at is not None


async def test_an_older_tier_change_arriving_late_is_ignored(world: World) -> None:
    member = world.member()
    for tier, days in (("gold", 0), ("silver", -3)):
        async with world.uow as uow:
            at = world.now + timedelta(days=days)
            await consumers.on_tier_changed(uow, member, tier, at, world.now)
            await uow.commit()
    assert world.ledger.accounts[member].tier == "gold"


async def test_the_settlement_reports_issued_redeemed_and_flows(world: World) -> None:
    member = world.member()
    await world.earn(member, "cinema", "100")
    async with world.uow as uow:
        await spending.redeem(uow, member, "mall", "POS", 60, "", world.directory, world.now)
        await uow.commit()
    async with world.uow as uow:
        found = await settlement.settlement(
            uow, world.now - timedelta(hours=1), world.now + timedelta(hours=1), world.now
        )
    assert (found.units["cinema"].issued, found.units["mall"].redeemed) == (150, 60)
    assert found.flows == [("cinema", "mall", 60)]
    assert found.ledger_points == 90


async def test_a_settlement_period_ends_after_it_starts(world: World) -> None:
    async with world.uow as uow:
        with pytest.raises(InvalidArgument):
            await settlement.settlement(uow, world.now, world.now, world.now)


async def test_publishing_a_programme_records_programme_published(world: World) -> None:
    (event,) = world.published(events.ProgrammePublished)
    assert isinstance(event, events.ProgrammePublished)
    assert (event.version, event.units) == (1, ("cinema", "hotel", "mall"))


async def test_a_later_programme_version_may_not_start_in_the_past(world: World) -> None:
    async with world.uow as uow:
        with pytest.raises(InvalidArgument):
            await programmes.publish_programme(uow, programme(), "again", world.now)


async def test_an_account_changed_but_not_saved_fails_the_commit(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100")
    async with world.uow as uow:
        account = await uow.ledger.account(member, lock=True)
        assert account is not None
        account.adjust(5, unit="mall", reason="x", lots=[], programme=programme(), now=world.now)
        with pytest.raises(RuntimeError):
            await uow.commit()
