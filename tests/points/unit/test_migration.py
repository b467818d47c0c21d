"""Legacy balances carried over from imported members, over the fake unit of work: the rate per
unit and its rounding, expiry given, by the rule or already past, once per legacy account,
funded by the unit, never qualifying activity."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from loyalty.points.v1 import programme_pb2
from loyalty_kit.errors import InvalidArgument
from loyalty_points.domain import events
from loyalty_points.domain.account import ERASED, MERGED, Account
from loyalty_points.domain.ledger import LotStatus, PostingKind
from loyalty_points.domain.migration import (
    ImportedChunk,
    LegacyBalance,
    UnitNotInProgramme,
    converted,
)
from loyalty_points.domain.programme import Programme, UnitRule
from loyalty_points.entrypoints.convert import programme_from, programme_message
from loyalty_points.service_layer import jobs, migration, programmes, settlement
from loyalty_points.service_layer.migration import CarriedOver

from tests.points.unit.conftest import World, programme


def with_rates(base: Programme) -> Programme:
    """The unit conftest's programme with Huayue's legacy rates: mall 10, cinema 5; the hotel
    leaves it unset (1:1)."""
    units = dict(base.units)
    units["mall"] = dataclasses.replace(units["mall"], legacy_points_per_point=Decimal(10))
    units["cinema"] = dataclasses.replace(units["cinema"], legacy_points_per_point=Decimal(5))
    return dataclasses.replace(base, units=units)


@pytest.fixture
async def legacy(world: World) -> World:
    """A world whose programme (published a day later) converts legacy points."""
    world.later(days=1)
    async with world.uow as uow:
        rates = dataclasses.replace(with_rates(programme()), effective_from=world.now)
        await programmes.publish_programme(uow, rates, "legacy rates", world.now)
        await uow.commit()
    return world


def key() -> str:
    return uuid.uuid4().hex


def balance(
    member_id: str, points: int, legacy_key: str = "", expires_at: datetime | None = None
) -> LegacyBalance:
    return LegacyBalance(member_id, legacy_key or key(), points, expires_at)


async def carry(
    world: World, unit: str, *balances: LegacyBalance, imported_at: datetime | None = None
) -> CarriedOver:
    chunk = ImportedChunk(
        f"memberImports/{uuid.uuid4().hex[:8]}", unit, imported_at or world.now, balances
    )
    async with world.uow as uow:
        done = await migration.carry_over(uow, chunk, world.now)
        await uow.commit()
    return done


async def test_a_balance_converts_at_its_units_rate_rounded_down(legacy: World) -> None:
    mall, cinema, hotel, small = (legacy.member() for _ in range(4))
    await carry(legacy, "mall", balance(mall, 12_345))
    await carry(legacy, "cinema", balance(cinema, 12), balance(small, 4))
    await carry(legacy, "hotel", balance(hotel, 7))

    assert await legacy.balance(mall) == (1_234, 0)  # 10:1, the 5 left over is not carried
    assert await legacy.balance(cinema) == (2, 0)  # 5:1
    assert await legacy.balance(hotel) == (7, 0)  # no rate set: 1:1, available at once
    assert await legacy.balance(small) == (0, 0)  # below one group point
    (posting,) = legacy.ledger.postings_of(mall)
    assert (posting.kind, posting.points, posting.unit) == (PostingKind.MIGRATION, 1_234, "mall")
    assert not posting.pending
    assert posting.breakdown is not None
    assert (posting.breakdown["legacy_points"], posting.breakdown["legacy_points_per_point"]) == (
        12_345,
        "10",
    )


def test_the_conversion_is_exact_for_any_rate() -> None:
    assert converted(10, Decimal("2.5")) == 4
    assert converted(9_999_999_999_999_999, Decimal(10)) == 999_999_999_999_999
    assert converted(3, Decimal("0.3")) == 10  # 0.3 legacy points a point: 10, not 9.999
    assert converted(1, Decimal("1.000000001")) == 0


async def test_the_expiry_is_the_legacy_one_or_the_programmes_rule(legacy: World) -> None:
    given, ruled, lapsed = (legacy.member() for _ in range(3))
    until = legacy.now + timedelta(days=90)
    done = await carry(
        legacy,
        "mall",
        balance(given, 1_000, expires_at=until),
        balance(ruled, 1_000),
        balance(lapsed, 1_000, expires_at=legacy.now - timedelta(days=1)),
    )

    assert (done.credited, done.points, dict(done.skipped)) == (2, 200, {"expired": 1})
    (given_lot,) = legacy.ledger.lots_of(given)
    assert given_lot.expires_at == until
    (ruled_lot,) = legacy.ledger.lots_of(ruled)
    assert ruled_lot.expires_at == with_rates(programme()).expiry_of(legacy.now)
    assert legacy.ledger.lots_of(lapsed) == []
    assert await legacy.balance(lapsed) == (0, 0)


async def test_a_legacy_account_is_carried_over_once_whatever_brings_it(legacy: World) -> None:
    member = legacy.member()
    account = key()
    await carry(legacy, "mall", balance(member, 5_000, account))
    again = await carry(legacy, "mall", balance(member, 5_000, account))  # a second import
    twice = await carry(
        legacy, "mall", balance(member, 5_000, account), balance(member, 50, account)
    )

    assert (again.credited, again.carried_before) == (0, 1)
    assert (twice.credited, twice.carried_before) == (0, 1)
    assert await legacy.balance(member) == (500, 0)
    # The same key at another unit is another legacy account.
    await carry(legacy, "cinema", balance(member, 50, account))
    assert await legacy.balance(member) == (510, 0)


async def test_a_balance_that_credited_nothing_may_come_in_again_corrected(legacy: World) -> None:
    member, account = legacy.member(), key()
    past = legacy.now - timedelta(days=1)
    assert (await carry(legacy, "mall", balance(member, 900, account, past))).credited == 0
    corrected = balance(member, 900, account, legacy.now + timedelta(days=30))
    assert (await carry(legacy, "mall", corrected)).credited == 1
    assert (await carry(legacy, "mall", corrected)).carried_before == 1
    assert await legacy.balance(member) == (90, 0)


async def test_the_chunk_is_announced_once_and_never_as_earned_points(legacy: World) -> None:
    first, second = legacy.member(), legacy.member()
    await carry(legacy, "mall", balance(first, 100), balance(second, 250))

    assert legacy.published(events.PointsEarned) == []
    (event,) = legacy.published(events.PointsMigrated)
    assert isinstance(event, events.PointsMigrated)
    assert (event.unit, event.legacy_points_per_point) == ("mall", "10")
    assert sorted((b.member_id, b.legacy_points, b.points) for b in event.balances) == sorted(
        [(first, 100, 10), (second, 250, 25)]
    )
    # Not earned: the lifetime figure that tiers-like readers see stays as it was.
    assert legacy.ledger.accounts[first].lifetime_earned == 0


async def test_the_unit_funds_the_points_in_the_settlement(legacy: World) -> None:
    member = legacy.member()
    start = legacy.now
    await carry(legacy, "cinema", balance(member, 1_000, expires_at=legacy.now + timedelta(days=2)))
    await legacy.earn(member, "mall", "100")
    legacy.later(days=3)
    async with legacy.uow as uow:
        await jobs.expire_chunk(uow, legacy.now, 50, legacy.now)
        await uow.commit()
        end = legacy.now + timedelta(seconds=1)
        report = await settlement.settlement(uow, start, end, legacy.now)

    assert (report.units["cinema"].issued, report.units["cinema"].expired) == (200, 200)
    assert report.units["mall"].issued == 100
    issued = sum(f.issued - f.expired for f in report.units.values())
    assert issued == report.ledger_points == 100


async def test_an_erased_member_gets_nothing_and_a_merged_one_its_survivor(legacy: World) -> None:
    erased, absorbed, survivor = legacy.member(), legacy.member(), legacy.member()
    async with legacy.uow as uow:
        for member_id in (erased, absorbed, survivor):
            await uow.ledger.create_account(Account(member_id), legacy.now)
        await uow.commit()
    legacy.ledger.accounts[erased].state = ERASED
    legacy.ledger.accounts[absorbed].state = MERGED
    legacy.ledger.accounts[absorbed].merged_into = survivor

    done = await carry(legacy, "hotel", balance(erased, 300), balance(absorbed, 400))

    assert (done.credited, dict(done.skipped)) == (1, {"no_member": 1})
    assert await legacy.balance(erased) == (0, 0)
    assert await legacy.balance(absorbed) == (0, 0)
    assert await legacy.balance(survivor) == (400, 0)
    assert [lot.status for lot in legacy.ledger.lots_of(survivor)] == [LotStatus.OPEN]


async def test_a_unit_the_programme_does_not_name_is_refused(legacy: World) -> None:
    with pytest.raises(UnitNotInProgramme):
        await carry(legacy, "estate", balance(legacy.member(), 100))
    # Before the first programme was in force there is no rate either.
    with pytest.raises(UnitNotInProgramme):
        await carry(
            legacy,
            "mall",
            balance(legacy.member(), 100),
            imported_at=datetime(2019, 1, 1, tzinfo=UTC),
        )


def test_the_rate_is_a_positive_decimal_and_reads_back_as_written() -> None:
    message = programme_message(with_rates(programme()))
    rates = {u.unit: u.legacy_points_per_point for u in message.units}
    assert rates == {"mall": "10", "hotel": "", "cinema": "5"}
    assert programme_from(message, programme().effective_from).units["hotel"].legacy_rate == 1
    for bad in ("0", "-2", "ten", "NaN"):
        message.units[0].legacy_points_per_point = bad
        with pytest.raises(InvalidArgument) as refused:
            programme_from(message, programme().effective_from)
        fields = [v.field for v in refused.value.field_violations]
        assert fields == ["programme.units[0].legacy_points_per_point"]
    rule = UnitRule("mall", Decimal(1), legacy_points_per_point=Decimal(0))
    with pytest.raises(InvalidArgument):
        dataclasses.replace(programme(), units={"mall": rule}).validate()
    assert programme_pb2.UnitRule(unit="x").legacy_points_per_point == ""
