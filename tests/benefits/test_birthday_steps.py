"""RunBirthdayGifts in steps, as `loyalty-admin jobs run birthday-gifts` drives it: a count
first (`validate_only`, which grants nothing), then calls of at most `max_members` members, each
carrying on after the member the previous one stopped at (`page_token`), until
`next_page_token` is empty; the same totals as one call."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty_kit.pagination import next_token
from loyalty_kit.timestamps import timestamp

from tests.benefits.conftest import Benefits
from tests.benefits.test_birthdays import birthday_coupons, born_on
from tests.benefits.test_tier_events import changed
from tests.points.conftest import ADMIN
from tests.support.events import publish
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Noon in Shanghai (the catalogue's time zone) on a day no other test is born on.
BIRTHDAY = datetime(2026, 9, 9, 4, tzinfo=UTC)
A_YEAR_ON = datetime(2027, 9, 9, 4, tzinfo=UTC)


async def due(benefits: Benefits, at: datetime, page_token: str = "") -> int:
    counted = await benefits.as_(ADMIN).RunBirthdayGifts(
        pb.RunBirthdayGiftsRequest(as_of=timestamp(at), validate_only=True, page_token=page_token)
    )
    assert (counted.celebrating, counted.granted, counted.next_page_token) == (0, 0, "")
    return int(counted.remaining)


async def silver_members_born_on(benefits: Benefits, day: date, count: int) -> list[str]:
    """Members born on `day` whose silver tier (which has a birthday gift) the service knows,
    once it has their birthdays too."""
    before = await due(benefits, BIRTHDAY)
    members = [await born_on(benefits, day) for _ in range(count)]
    for member in members:
        event = changed(member.split("/")[1], "basic", "silver", datetime.now(UTC))
        await publish(benefits.settings, "tiers", event)
    for member in members:
        await benefits.tier_learned(member, "silver")
    for _ in range(200):  # identity's ProfileChanged brings the birthdays
        if await due(benefits, BIRTHDAY) == before + count:
            return members
        await asyncio.sleep(0.05)
    raise AssertionError("the benefits service never learned the birthdays")


async def test_birthday_gifts_are_counted_then_walked_in_steps_to_the_totals_of_one_call(
    benefits: Benefits,
) -> None:
    admin = benefits.as_(ADMIN)
    members = await silver_members_born_on(benefits, BIRTHDAY.date(), 5)
    celebrating = await due(benefits, BIRTHDAY)
    assert celebrating >= 5
    for member in members:  # counting granted nothing
        assert await birthday_coupons(benefits, member) == []

    first = await admin.RunBirthdayGifts(
        pb.RunBirthdayGiftsRequest(as_of=timestamp(BIRTHDAY), max_members=2, chunk_size=1)
    )
    assert (first.celebrating, first.remaining) == (2, celebrating - 2)
    assert first.next_page_token
    assert await due(benefits, BIRTHDAY, first.next_page_token) == celebrating - 2
    steps = [first]
    while steps[-1].next_page_token:
        steps.append(
            await admin.RunBirthdayGifts(
                pb.RunBirthdayGiftsRequest(
                    as_of=timestamp(BIRTHDAY),
                    max_members=2,
                    page_token=steps[-1].next_page_token,
                )
            )
        )
    assert len(steps) == -(-celebrating // 2)
    assert [s.remaining for s in steps] == [
        max(0, celebrating - 2 * n) for n in range(1, len(steps) + 1)
    ]
    assert sum(s.celebrating for s in steps) == celebrating
    for member in members:
        assert await birthday_coupons(benefits, member) == ["birthday:2026"]

    # A year on, the same members' birthday again, in one call.
    at_once = await admin.RunBirthdayGifts(pb.RunBirthdayGiftsRequest(as_of=timestamp(A_YEAR_ON)))
    assert (at_once.remaining, at_once.next_page_token) == (0, "")
    assert (at_once.celebrating, at_once.granted) == (
        sum(s.celebrating for s in steps),
        sum(s.granted for s in steps),
    )
    assert at_once.granted >= 5


async def test_a_page_token_that_does_not_decode_or_is_of_another_day_is_refused(
    benefits: Benefits,
) -> None:
    admin = benefits.as_(ADMIN)
    await silver_members_born_on(benefits, BIRTHDAY.date(), 2)
    stopped = await admin.RunBirthdayGifts(
        pb.RunBirthdayGiftsRequest(as_of=timestamp(BIRTHDAY), max_members=1)
    )
    assert stopped.next_page_token
    not_a_member = next_token("not-a-member-id", {"birthday": "2026-09-09"})
    for as_of, token in (
        (BIRTHDAY, "not a token"),
        (BIRTHDAY, not_a_member),
        (A_YEAR_ON, stopped.next_page_token),  # the walk of another day
    ):
        refused = await fails(
            admin.RunBirthdayGifts(
                pb.RunBirthdayGiftsRequest(as_of=timestamp(as_of), page_token=token)
            )
        )
        assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])
    refused = await fails(admin.RunBirthdayGifts(pb.RunBirthdayGiftsRequest(max_members=-1)))
    assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["max_members"])
