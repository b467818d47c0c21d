"""RunYearEnd and RunGrantExpiry in steps, as `loyalty-admin jobs run` drives them: a count
first (`validate_only`, which changes nothing), then calls of at most `max_members` tier years
or `max_grants` grants until `remaining` is 0, ending where one call would have."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty_kit.timestamps import timestamp

from tests.points.conftest import Points, rid
from tests.support.rpc import fails
from tests.tiers.conftest import tier_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def silver_members(points: Points, tiers: Any, count: int) -> list[str]:
    """Members who reached silver now: their tier year ends in twelve months."""
    made = []
    for _ in range(count):
        member = await points.member()
        await points.earn(member, "mall", "6000.00")
        await tier_of(tiers, member, "silver")
        made.append(member)
    return made


def year_end_totals(*answers: pb.RunYearEndResponse) -> tuple[int, int, int]:
    return (
        sum(a.judged for a in answers),
        sum(a.retained for a in answers),
        sum(a.downgraded for a in answers),
    )


async def test_the_year_end_is_counted_then_run_in_steps_to_the_totals_of_one_call(
    points: Points, tiers: Any
) -> None:
    years_on = timestamp(datetime.now(UTC) + timedelta(days=400))
    await tiers.RunYearEnd(pb.RunYearEndRequest(as_of=years_on))  # what earlier tests left due
    stepped = await silver_members(points, tiers, 4)

    due = await tiers.RunYearEnd(pb.RunYearEndRequest(as_of=years_on, validate_only=True))
    assert (due.remaining, *year_end_totals(due)) == (4, 0, 0, 0)
    for member in stepped:  # counting judged nobody
        assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))).tier == "silver"

    steps = [
        await tiers.RunYearEnd(pb.RunYearEndRequest(as_of=years_on, max_members=3, chunk_size=2))
    ]
    while steps[-1].remaining:
        steps.append(await tiers.RunYearEnd(pb.RunYearEndRequest(as_of=years_on, max_members=3)))
    assert [(s.judged, s.remaining) for s in steps] == [(3, 1), (1, 0)]
    for member in stepped:  # nothing spent in the tier year: one level down
        assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))).tier == "basic"

    await silver_members(points, tiers, 4)
    at_once = await tiers.RunYearEnd(pb.RunYearEndRequest(as_of=years_on))
    assert at_once.remaining == 0
    assert year_end_totals(*steps) == year_end_totals(at_once) == (4, 0, 4)


async def gifted_members(points: Points, tiers: Any, count: int, ends: datetime) -> list[str]:
    made = []
    for _ in range(count):
        member = await points.member()
        await tiers.CreateTierGrant(
            pb.CreateTierGrantRequest(
                member=member,
                request_id=rid(),
                tier_grant=pb.TierGrant(
                    tier="gold",
                    kind=pb.GRANT_KIND_GIFT,
                    reason="opening week gift",
                    end_time=timestamp(ends),
                ),
            )
        )
        made.append(member)
    return made


async def test_grant_expiry_is_counted_then_run_in_steps_to_the_totals_of_one_call(
    points: Points, tiers: Any
) -> None:
    ends = datetime.now(UTC) + timedelta(hours=1)
    day_after = timestamp(ends + timedelta(days=1))
    await tiers.RunGrantExpiry(pb.RunGrantExpiryRequest(as_of=day_after))  # earlier tests' grants
    stepped = await gifted_members(points, tiers, 4, ends)

    due = await tiers.RunGrantExpiry(pb.RunGrantExpiryRequest(as_of=day_after, validate_only=True))
    assert (due.remaining, due.ended, due.changed) == (4, 0, 0)
    assert (await tiers.RunGrantExpiry(pb.RunGrantExpiryRequest(validate_only=True))).remaining == 0
    for member in stepped:  # counting ended nothing
        assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))).tier == "gold"

    steps = [await tiers.RunGrantExpiry(pb.RunGrantExpiryRequest(as_of=day_after, max_grants=3))]
    while steps[-1].remaining:
        steps.append(
            await tiers.RunGrantExpiry(pb.RunGrantExpiryRequest(as_of=day_after, max_grants=3))
        )
    assert [(s.ended, s.remaining) for s in steps] == [(3, 1), (1, 0)]
    for member in stepped:  # back to what the activity holds
        assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))).tier == "basic"

    await gifted_members(points, tiers, 4, ends)
    at_once = await tiers.RunGrantExpiry(pb.RunGrantExpiryRequest(as_of=day_after))
    assert at_once.remaining == 0
    stepped_totals = (sum(s.ended for s in steps), sum(s.changed for s in steps))
    assert stepped_totals == (at_once.ended, at_once.changed) == (4, 4)


async def test_a_negative_limit_is_refused_naming_the_field(tiers: Any) -> None:
    refused = await fails(tiers.RunYearEnd(pb.RunYearEndRequest(max_members=-1)))
    assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["max_members"])
    refused = await fails(tiers.RunGrantExpiry(pb.RunGrantExpiryRequest(max_grants=-1)))
    assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["max_grants"])
