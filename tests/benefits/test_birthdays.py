"""Birthday gifts: the tier's birthday coupon on the member's birthday (from identity's
ProfileChanged), once a year."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty_kit.timestamps import add_months, timestamp

from tests.benefits.conftest import APP, Benefits, rid
from tests.benefits.test_tier_events import changed
from tests.points.conftest import ADMIN
from tests.support.events import publish

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def born_on(benefits: Benefits, day: date) -> str:
    request = identity_pb.RegisterMemberRequest(
        request_id=rid(),
        unit="mall",
        channel=channel_pb2.CHANNEL_APP,
        identities=[member_pb2.Identity(type="phone", value=f"136{uuid.uuid4().int % 10**8:08d}")],
        profile=member_pb2.Profile(full_name="Birthday Tester"),
    )
    request.profile.birthday.year = 1990
    request.profile.birthday.month = day.month
    request.profile.birthday.day = day.day
    response = await benefits.points.identity().RegisterMember(request)
    return str(response.member.name)


async def birthday_coupons(benefits: Benefits, member: str) -> list[str]:
    listed = await benefits.as_(APP).ListCoupons(pb.ListCouponsRequest(member=member))
    return [c.source for c in listed.coupons if c.template_code == "birthday-gift"]


async def test_a_silver_member_gets_the_birthday_coupon_once_a_year_and_others_none(
    benefits: Benefits,
) -> None:
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    basic = await born_on(benefits, today)  # the entry tier has no birthday gift
    tomorrow = await born_on(benefits, today + timedelta(days=1))
    silver = await born_on(benefits, today)
    for member in (tomorrow, silver):
        await publish(
            benefits.settings, "tiers", changed(member.split("/")[1], "basic", "silver", now)
        )
    for _ in range(200):  # until the profile and tier events have arrived
        await benefits.as_(ADMIN).RunBirthdayGifts(pb.RunBirthdayGiftsRequest(as_of=timestamp(now)))
        if await birthday_coupons(benefits, silver):
            break
        await asyncio.sleep(0.05)
    assert await birthday_coupons(benefits, silver) == [f"birthday:{today.year}"]
    again = await benefits.as_(ADMIN).RunBirthdayGifts(
        pb.RunBirthdayGiftsRequest(as_of=timestamp(now))
    )
    assert again.celebrating >= 2 and again.granted == 0  # once a year
    assert await birthday_coupons(benefits, silver) == [f"birthday:{today.year}"]
    assert await birthday_coupons(benefits, basic) == []
    assert await birthday_coupons(benefits, tomorrow) == []
    # A year later (the same day in Shanghai): the birthday comes round again.
    next_year = add_months(now, 12)
    await benefits.as_(ADMIN).RunBirthdayGifts(
        pb.RunBirthdayGiftsRequest(as_of=timestamp(next_year))
    )
    assert sorted(await birthday_coupons(benefits, silver)) == [
        f"birthday:{today.year}",
        f"birthday:{today.year + 1}",
    ]
