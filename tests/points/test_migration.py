"""Imported members' legacy balances, as the points service carries them over from identity's
MembersImported on the real bus: a MIGRATION posting per member at the unit's legacy rate
(Huayue: mall 10:1, hotel 1:1, cinema 5:1), available at once, expiring as the legacy system
said or by the programme's rule, funded by the unit in the settlement, and carried over once
per legacy account whatever redelivers or imports it again."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_kit.timestamps import moment, timestamp

from tests.points.conftest import ADMIN, Points, rid
from tests.points.test_spend import redeem
from tests.support.clock import Clock
from tests.support.events import publish, published
from tests.support.metrics import moved, scrape, scraped_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def member_id(member: str) -> str:
    return member.removeprefix("members/")


def entry(
    member: str, legacy_points: int, key: str = "", expires_at: datetime | None = None
) -> identity_events.ImportedMember:
    imported = identity_events.ImportedMember(
        member_id=member_id(member),
        legacy_key=key or uuid.uuid4().hex,
        created=True,
        legacy_points=legacy_points,
    )
    if expires_at is not None:
        imported.legacy_points_expire_at.CopyFrom(timestamp(expires_at))
    return imported


def chunk(unit: str, *entries: identity_events.ImportedMember) -> identity_events.MembersImported:
    return identity_events.MembersImported(
        member_import=f"memberImports/{uuid.uuid4().hex[:12]}",
        unit=unit,
        members=list(entries),
        imported_at=timestamp(datetime.now(UTC)),
    )


async def send(points: Points, event: Any, event_id: str = "", msg_id: str = "") -> str:
    return await publish(points.service.context.settings, "identity", event, event_id, msg_id)


async def carried(points: Points, member: str, available: int) -> pb.Balance:
    """The member's balance once it holds `available` (the event takes a moment to arrive)."""
    for _ in range(300):
        balance = await points.balance(member)
        if balance.available == available:
            return balance
        await asyncio.sleep(0.05)
    raise AssertionError(f"{member} never held {available}; holds {balance.available}")


async def postings(points: Points, member: str) -> list[pb.Posting]:
    listed = await points.as_().ListPostings(pb.ListPostingsRequest(member=member))
    return list(listed.postings)


async def test_balances_open_at_each_units_rate_available_at_once(points: Points) -> None:
    mall, cinema, hotel, few = [await points.member() for _ in range(4)]
    await send(points, chunk("mall", entry(mall, 12_345)))
    await send(points, chunk("cinema", entry(cinema, 12), entry(few, 4)))
    await send(points, chunk("hotel", entry(hotel, 7)))

    assert (await carried(points, mall, 1_234)).pending == 0  # 10:1, rounded down
    assert (await carried(points, cinema, 2)).lifetime_earned == 0  # 5:1; not earned
    assert (await carried(points, hotel, 7)).pending == 0  # 1:1; hotel points wait, these not
    assert (await points.balance(few)).available == 0  # below one group point
    (posting,) = await postings(points, mall)
    assert (posting.kind, posting.points, posting.unit, posting.pending) == (
        pb.POSTING_KIND_MIGRATION,
        1_234,
        "mall",
        False,
    )
    assert "12345 mall points at 10 per point" in posting.reason
    assert await postings(points, few) == []
    # Spent like any points, at any unit.
    assert (await redeem(points, mall, 1_000, unit="hotel")).balance.available == 234


async def test_the_expiry_is_the_legacy_one_or_the_programmes_rule_never_a_past_one(
    points: Points,
) -> None:
    given, ruled, lapsed = [await points.member() for _ in range(3)]
    now = datetime.now(UTC)
    event = chunk(
        "hotel",
        entry(given, 300, expires_at=now + timedelta(days=10)),
        entry(ruled, 400),
        entry(lapsed, 500, expires_at=now - timedelta(days=1)),
    )
    await send(points, event)
    await carried(points, ruled, 400)

    soon = await points.as_().GetBalance(
        pb.GetBalanceRequest(member=given, expiring_within_days=30)
    )
    assert (soon.balance.available, soon.balance.expiring_soon) == (300, 300)
    # The programme's rule: the end of the 24th month after the import, not within a year.
    later = await points.as_().GetBalance(
        pb.GetBalanceRequest(member=ruled, expiring_within_days=365)
    )
    assert later.balance.expiring_soon == 0
    within = await points.as_().GetBalance(
        pb.GetBalanceRequest(member=ruled, expiring_within_days=800)
    )
    assert within.balance.expiring_soon == 400
    assert (await points.balance(lapsed)).available == 0
    assert await postings(points, lapsed) == []

    ids = [member_id(m) for m in (given, ruled, lapsed)]
    found = await published(
        points.service.context.settings,
        "points",
        points_events.PointsMigrated,
        ids[:2],
        members_of=lambda e: [b.member_id for b in e.balances],
    )
    (announced,) = found[ids[0]]
    assert announced.member_import == event.member_import
    assert (announced.unit, announced.legacy_points_per_point) == ("hotel", "1")
    by_member = {b.member_id: b for b in announced.balances}
    assert set(by_member) == set(ids[:2])  # the lapsed balance is not announced
    assert moment(by_member[ids[0]].expires_at, "expires_at") == moment(
        event.members[0].legacy_points_expire_at, "expires_at"
    )


async def test_the_unit_funds_the_points_in_the_settlement(points: Points, clock: Clock) -> None:
    member = await points.member()
    start = timestamp(clock() - timedelta(milliseconds=1))
    await send(points, chunk("cinema", entry(member, 1_000)))
    await carried(points, member, 200)
    await redeem(points, member, 50, unit="hotel")
    end = timestamp(clock() + timedelta(seconds=1))

    report = await points.as_(ADMIN).GetSettlement(
        pb.GetSettlementRequest(start_time=start, end_time=end)
    )
    units = {u.unit: u for u in report.units}
    assert (units["cinema"].points_issued, units["cinema"].value_issued.amount) == (200, "2.00")
    assert units["hotel"].points_redeemed == 50
    assert [(f.earned_unit, f.redeemed_unit, f.points) for f in report.flows] == [
        ("cinema", "hotel", 50)
    ]
    assert report.ledger_points == 150


async def test_a_redelivery_or_a_second_import_of_the_same_account_changes_nothing(
    points: Points,
) -> None:
    member, other, marker = [await points.member() for _ in range(3)]
    card = uuid.uuid4().hex
    first = chunk("mall", entry(member, 5_000, card))
    event_id = await send(points, first)
    await carried(points, member, 500)

    await send(points, first, event_id, msg_id=rid())  # the bus delivers it again
    await send(points, chunk("mall", entry(member, 9_000, card)))  # the file imported again
    # The same legacy account, now joined to another member (a resolved merge candidate).
    await send(points, chunk("mall", entry(other, 5_000, card)))
    await send(points, chunk("mall", entry(marker, 10)))  # handled after all of the above
    await carried(points, marker, 1)

    assert (await points.balance(member)).available == 500
    assert [p.kind for p in await postings(points, member)] == [pb.POSTING_KIND_MIGRATION]
    assert (await points.balance(other)).available == 0


async def test_a_chunk_of_two_thousand_members_is_carried_over_in_one_go(
    points: Points, clock: Clock
) -> None:
    """A chunk as identity commits them: one transaction, a few statements (not a round trip
    per member), the whole chunk or nothing."""
    marker = await points.member()
    members = [str(uuid.uuid4()) for _ in range(1_999)]
    start = timestamp(clock() - timedelta(milliseconds=1))
    began = asyncio.get_running_loop().time()
    await send(
        points,
        chunk("hotel", *(entry(m, 100 + i) for i, m in enumerate(members)), entry(marker, 5)),
    )
    await carried(points, marker, 5)
    took = asyncio.get_running_loop().time() - began
    end = timestamp(clock() + timedelta(seconds=1))

    report = await points.as_(ADMIN).GetSettlement(
        pb.GetSettlementRequest(start_time=start, end_time=end)
    )
    units = {u.unit: u for u in report.units}
    assert units["hotel"].points_issued == sum(100 + i for i in range(1_999)) + 5
    assert took < 30, f"{took:.1f} s for a chunk"


async def test_points_migrated_are_counted_by_the_unit_funding_them(points: Points) -> None:
    member = await points.member()
    before = await scrape(points.service)
    await send(points, chunk("cinema", entry(member, 1_000)))
    await carried(points, member, 200)

    after = await scraped_until(
        points.service,
        lambda s: moved(before, s, "loyalty_points_total", movement="migrated") >= 200,
    )
    assert moved(before, after, "loyalty_points_total", movement="migrated", unit="cinema") == 200
    assert moved(before, after, "loyalty_points_total", movement="earned") == 0
