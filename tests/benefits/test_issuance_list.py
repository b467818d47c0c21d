"""Bulk coupon issuances listed with their progress (the console's jobs page), newest first in
AIP-158 pages: every one for an admin, a unit's own for the unit."""

from __future__ import annotations

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty_kit.caller import Caller

from tests.benefits.conftest import CINEMA, MALL, MARKETING, Benefits
from tests.benefits.test_issuances import issuance, segment, tagged, watch
from tests.points.conftest import ADMIN
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

SUCCEEDED = pb.COUPON_ISSUANCE_STATE_SUCCEEDED


async def listed(
    benefits: Benefits, caller: Caller, request: pb.ListCouponIssuancesRequest
) -> list[pb.CouponIssuance]:
    """Every page of the list, checked to hold at most a page each."""
    found: list[pb.CouponIssuance] = []
    for _ in range(1000):
        page = await benefits.as_(caller).ListCouponIssuances(request)
        assert len(page.coupon_issuances) <= (request.page_size or 50)
        found.extend(page.coupon_issuances)
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token
    raise AssertionError("the pages never ended")


async def test_issuances_are_listed_newest_first_with_progress_and_each_unit_sees_its_own(
    benefits: Benefits,
) -> None:
    tag = segment()
    await tagged(benefits, tag, 3)
    group = [
        (await benefits.as_(MARKETING).CreateCouponIssuance(issuance("welcome-silver", t)))
        for t in (tag, segment())
    ]
    mall = await benefits.as_(MALL).CreateCouponIssuance(issuance("test-mall-15", segment()))
    names = [c.coupon_issuance.name for c in (*group, mall)]
    for name in names:
        await watch(benefits.as_(ADMIN), name)

    every = await listed(benefits, ADMIN, pb.ListCouponIssuancesRequest(page_size=2))
    assert len({i.name for i in every}) == len(every)  # no page repeats another's
    mine = {i.name: i for i in every if i.name in names}
    assert sorted(mine) == sorted(names)
    times = [(i.create_time.ToDatetime(), i.name) for i in every]
    assert times == sorted(times, reverse=True)
    first = mine[names[0]]
    assert (first.state, first.total_members, first.issued_coupons) == (SUCCEEDED, 3, 3)
    assert (first.progress_percent, first.template, first.tag) == (100, "welcome-silver", tag)

    # A unit lists only what it started; the group's marketing only the group's.
    own = await listed(benefits, MALL, pb.ListCouponIssuancesRequest(page_size=200))
    assert names[2] in {i.name for i in own}
    assert {i.issuer_unit for i in own} == {"mall"}
    crm = await listed(benefits, MARKETING, pb.ListCouponIssuancesRequest(page_size=200))
    assert {names[0], names[1]} <= {i.name for i in crm}
    assert {i.issuer_unit for i in crm} == {"group"}

    # By state.
    done = await listed(benefits, MALL, pb.ListCouponIssuancesRequest(state=SUCCEEDED))
    assert names[2] in {i.name for i in done}
    running = pb.ListCouponIssuancesRequest(state=pb.COUPON_ISSUANCE_STATE_RUNNING)
    assert names[2] not in {i.name for i in await listed(benefits, MALL, running)}


async def test_listing_issuances_needs_the_scope_and_checks_its_arguments(
    benefits: Benefits,
) -> None:
    refused = await fails(benefits.as_(CINEMA).ListCouponIssuances(pb.ListCouponIssuancesRequest()))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    stub = benefits.as_(ADMIN)
    unnamed = pb.ListCouponIssuancesRequest()
    unnamed.state = 99  # type: ignore[assignment]
    refused = await fails(stub.ListCouponIssuances(unnamed))
    assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["state"])
    refused = await fails(stub.ListCouponIssuances(pb.ListCouponIssuancesRequest(page_size=-1)))
    assert refused.fields == ["page_size"]
    for _ in range(2):
        await benefits.as_(MARKETING).CreateCouponIssuance(issuance("welcome-silver", segment()))
    first = await stub.ListCouponIssuances(pb.ListCouponIssuancesRequest(page_size=1))
    assert first.next_page_token
    # A token of the admin's list is not one of a unit's, nor of another state's.
    for caller, request in (
        (MALL, pb.ListCouponIssuancesRequest(page_token=first.next_page_token)),
        (ADMIN, pb.ListCouponIssuancesRequest(page_token=first.next_page_token, state=SUCCEEDED)),
    ):
        refused = await fails(benefits.as_(caller).ListCouponIssuances(request))
        assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])
