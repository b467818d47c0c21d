"""RunExpiry and RunPendingActivation in steps, as `loyalty-admin jobs run` drives them: a count
first (`validate_only`, which changes nothing), then calls of at most `max_members` members
until `remaining` is 0, ending where one call would have."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_kit.timestamps import timestamp

from tests.points.conftest import ADMIN, Points
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXPIRED = "2024-08-15T10:00:00+08:00"  # earned then: expired at the end of August 2026


async def members_with_expired_points(points: Points, count: int) -> list[tuple[str, int]]:
    made = []
    for _ in range(count):
        member = await points.member()
        earned = await points.earn(member, "mall", "10.00", occur=EXPIRED)
        made.append((member, earned.posting.points))
    return made


def totals(*answers: pb.RunExpiryResponse) -> tuple[int, int, int]:
    return (
        sum(a.members_expired for a in answers),
        sum(a.lots_expired for a in answers),
        sum(a.points_expired for a in answers),
    )


async def test_expiry_is_counted_then_run_in_steps_to_the_totals_of_one_call(
    points: Points,
) -> None:
    admin = points.as_(ADMIN)
    await admin.RunExpiry(pb.RunExpiryRequest())  # whatever earlier tests left due
    stepped = await members_with_expired_points(points, 5)

    due = await admin.RunExpiry(pb.RunExpiryRequest(validate_only=True, max_members=1))
    assert (due.remaining, *totals(due)) == (5, 0, 0, 0)
    assert (await admin.RunExpiry(pb.RunExpiryRequest(validate_only=True))).remaining == 5
    for member, earned in stepped:  # counting expired nothing
        assert (await points.balance(member)).available == earned

    steps = [await admin.RunExpiry(pb.RunExpiryRequest(max_members=2, chunk_size=1))]
    while steps[-1].remaining:
        steps.append(await admin.RunExpiry(pb.RunExpiryRequest(max_members=2)))
    assert [(s.members_expired, s.remaining) for s in steps] == [(2, 3), (2, 1), (1, 0)]
    for member, _ in stepped:
        assert (await points.balance(member)).available == 0

    await members_with_expired_points(points, 5)
    at_once = await admin.RunExpiry(pb.RunExpiryRequest())
    assert at_once.remaining == 0
    assert totals(*steps) == totals(at_once) == (5, 5, sum(p for _, p in stepped))


async def test_pending_activation_is_counted_as_of_its_time_then_run_in_steps(
    points: Points,
) -> None:
    admin = points.as_(ADMIN)
    after_the_period = timestamp(datetime.now(UTC) + timedelta(days=8))
    await admin.RunPendingActivation(pb.RunPendingActivationRequest(as_of=after_the_period))
    stays = []
    for _ in range(3):
        member = await points.member()
        stays.append((member, (await points.earn(member, "hotel", "50.00")).posting.points))

    now = await admin.RunPendingActivation(pb.RunPendingActivationRequest(validate_only=True))
    assert now.remaining == 0  # the hotel's pending days have not passed yet
    due = await admin.RunPendingActivation(
        pb.RunPendingActivationRequest(as_of=after_the_period, validate_only=True)
    )
    assert (due.remaining, due.postings_activated, due.points_activated) == (3, 0, 0)
    for member, earned in stays:
        assert (await points.balance(member)).pending == earned

    steps = [
        await admin.RunPendingActivation(
            pb.RunPendingActivationRequest(as_of=after_the_period, max_members=2)
        )
    ]
    while steps[-1].remaining:
        steps.append(
            await admin.RunPendingActivation(
                pb.RunPendingActivationRequest(as_of=after_the_period, max_members=2)
            )
        )
    assert [(s.postings_activated, s.remaining) for s in steps] == [(2, 1), (1, 0)]
    assert sum(s.points_activated for s in steps) == sum(p for _, p in stays)
    for member, earned in stays:
        assert (await points.balance(member)).available == earned


async def test_a_negative_max_members_is_refused_naming_the_field(points: Points) -> None:
    admin = points.as_(ADMIN)
    refused = await fails(admin.RunExpiry(pb.RunExpiryRequest(max_members=-1, chunk_size=-1)))
    assert (refused.code, refused.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["chunk_size", "max_members"],
    )
    refused = await fails(
        admin.RunPendingActivation(pb.RunPendingActivationRequest(max_members=-5))
    )
    assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["max_members"])
