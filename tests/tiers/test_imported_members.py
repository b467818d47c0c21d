"""Imported members' legacy tiers, as the tiers service follows identity's MembersImported on
the real bus: a status match of the mapped tier until the end the import gave, once per legacy
account, a tier the ladder lacks skipped (never a poison message); and a legacy balance
carried over by the points service is no qualifying activity."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty_kit.timestamps import moment, timestamp

from tests.points.conftest import Points, rid
from tests.points.test_migration import carried, chunk, entry, member_id, send
from tests.support.events import published
from tests.tiers.conftest import points_learn, tier_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


def with_tier(
    imported: identity_events.ImportedMember, tier: str, ends_at: datetime | None = None
) -> identity_events.ImportedMember:
    imported.tier_code = tier
    if ends_at is not None:
        imported.tier_ends_at.CopyFrom(timestamp(ends_at))
    return imported


async def grants(tiers: Any, member: str) -> list[pb.TierGrant]:
    listed = await tiers.ListTierGrants(pb.ListTierGrantsRequest(member=member))
    return list(listed.tier_grants)


async def test_a_legacy_tier_becomes_a_status_match_until_the_end_given(
    points: Points, tiers: Any
) -> None:
    gold, unknown, marker = [await points.member() for _ in range(3)]
    ends = (datetime.now(UTC) + timedelta(days=400)).replace(microsecond=0)
    event = chunk(
        "mall",
        with_tier(entry(gold, 0), "gold", ends),
        with_tier(entry(unknown, 0), "black-card"),  # mapped to a tier the ladder lacks
        with_tier(entry(marker, 0), "platinum", ends),
    )
    await send(points, event)
    await tier_of(tiers, marker, "platinum")  # the chunk is in: the unknown tier blocked nothing

    found = await tier_of(tiers, gold, "gold")
    assert (found.earned_tier, found.grant.kind, found.grant.unit) == (
        "basic",
        pb.GRANT_KIND_STATUS_MATCH,
        "mall",
    )
    assert moment(found.grant.end_time, "end_time") == ends
    assert event.member_import in found.grant.reason
    await points_learn(points, gold, "gold")  # TierChanged went out as for any grant
    assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=unknown))).tier == "basic"
    assert await grants(tiers, unknown) == []


async def test_a_redelivery_or_a_second_import_of_the_same_account_grants_nothing_more(
    points: Points, tiers: Any
) -> None:
    member, marker = await points.member(), await points.member()
    card = uuid.uuid4().hex
    ends = datetime.now(UTC) + timedelta(days=300)
    first = chunk("hotel", with_tier(entry(member, 0, card), "gold", ends))
    event_id = await send(points, first)
    await tier_of(tiers, member, "gold")

    await send(points, first, event_id, msg_id=rid())  # the bus delivers it again
    again = chunk("hotel", with_tier(entry(member, 0, card), "platinum", ends))
    await send(points, again)  # the file imported again, the tier since raised
    await send(points, chunk("hotel", with_tier(entry(marker, 0), "gold", ends)))
    await tier_of(tiers, marker, "gold")

    assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))).tier == "gold"
    assert [g.tier for g in await grants(tiers, member)] == ["gold"]


async def test_a_legacy_balance_is_no_qualifying_activity(points: Points, tiers: Any) -> None:
    """A million legacy hotel points carried over, then a CNY 10 purchase: tiers counts the
    purchase and nothing else, and the member stays where the activity puts it."""
    member = await points.member()
    await send(points, chunk("hotel", entry(member, 1_000_000)))
    await carried(points, member, 1_000_000)
    await points.earn(member, "mall", "10.00")

    spend = Decimal(0)
    for _ in range(200):  # tiers counts the purchase, after the migration's event if any
        found = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
        spend = sum((Decimal(p.current) for p in found.progress), Decimal(0))
        if spend:
            break
        await asyncio.sleep(0.05)
    assert (spend, found.tier) == (Decimal(10), "basic")
    earned = await published(
        points.service.context.settings,
        "points",
        points_events.PointsEarned,
        [member_id(member)],
    )
    assert [e.points for e in earned[member_id(member)]] == [10]


async def test_a_chunk_of_two_thousand_status_matches_is_granted_in_one_go(
    points: Points, tiers: Any
) -> None:
    marker = await points.member()
    ends = datetime.now(UTC) + timedelta(days=300)
    members = [f"members/{uuid.uuid4()}" for _ in range(1_999)]
    began = asyncio.get_running_loop().time()
    await send(
        points,
        chunk("cinema", *(with_tier(entry(m, 0), "silver", ends) for m in [*members, marker])),
    )
    await tier_of(tiers, marker, "silver")
    took = asyncio.get_running_loop().time() - began

    assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=members[0]))).tier == "silver"
    assert took < 30, f"{took:.1f} s for a chunk"
