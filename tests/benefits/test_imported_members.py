"""Imported members' birthdays, as the benefits service follows identity's MembersImported on
the real bus: remembered as a changed profile's are, so the tier's birthday gift goes out on
the day; with the legacy tier's status match (tiers' TierChanged) the member is silver at once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty_kit.timestamps import timestamp

from tests.benefits.conftest import Benefits
from tests.benefits.test_birthdays import birthday_coupons
from tests.points.conftest import ADMIN
from tests.support.events import publish

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_an_imported_members_birthday_brings_the_birthday_gift(benefits: Benefits) -> None:
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    member = await benefits.points.member()  # registered with no birthday on file
    without = await benefits.points.member()  # imported with none either
    entries = [
        identity_events.ImportedMember(
            member_id=member.removeprefix("members/"),
            legacy_key=uuid.uuid4().hex,
            tier_code="silver",
            birthday_month=today.month,
            birthday_day=today.day,
        ),
        identity_events.ImportedMember(
            member_id=without.removeprefix("members/"),
            legacy_key=uuid.uuid4().hex,
            tier_code="silver",
        ),
    ]
    entries[0].tier_ends_at.CopyFrom(timestamp(now + timedelta(days=400)))
    entries[1].tier_ends_at.CopyFrom(timestamp(now + timedelta(days=400)))
    await publish(
        benefits.settings,
        "identity",
        identity_events.MembersImported(
            member_import=f"memberImports/{uuid.uuid4().hex[:12]}",
            unit="hotel",
            members=entries,
            imported_at=timestamp(now),
        ),
    )
    await benefits.tier_learned(member, "silver")  # the status match, through tiers
    await benefits.tier_learned(without, "silver")

    for _ in range(200):  # the birthday arrives on identity's stream, the tier on tiers'
        await benefits.as_(ADMIN).RunBirthdayGifts(pb.RunBirthdayGiftsRequest(as_of=timestamp(now)))
        if await birthday_coupons(benefits, member):
            break
        await asyncio.sleep(0.05)
    assert await birthday_coupons(benefits, member) == [f"birthday:{today.year}"]
    assert await birthday_coupons(benefits, without) == []
