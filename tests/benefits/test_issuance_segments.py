"""Coupons for every member of a dynamic segment (the insights service's), issued in bulk: each
member of the segment gets exactly one coupon, no one else any; a tag and a segment together,
or a segment insights does not know, are refused up front; insights down refuses the create
with UNAVAILABLE, and an issuance whose segment cannot be read for a while carries on later
instead of failing."""

from __future__ import annotations

import os
from typing import Any

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty_benefits.adapters.segments import GrpcDynamicSegments
from loyalty_benefits.app import SPEC
from loyalty_benefits.domain.errors import SegmentUnreachable
from loyalty_benefits.service_layer.ports import SegmentPage
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.benefits.conftest import MARKETING, Benefits, rid
from tests.benefits.test_issuances import coupons_of, watch
from tests.support.clients import As
from tests.support.clock import Clock
from tests.support.rpc import fails
from tests.support.segments import Figures, Segments

pytestmark = pytest.mark.asyncio(loop_scope="session")


def to_segment(template: str, segment: str, chunk_size: int = 2) -> Any:
    return pb.CreateCouponIssuanceRequest(
        coupon_issuance=pb.CouponIssuance(template=template, segment=segment),
        request_id=rid(),
        chunk_size=chunk_size,
    )


async def gold_segment(
    benefits: Benefits, insights_service: RunningService, clock: Clock, members: int
) -> tuple[str, list[str], str]:
    """A segment of `members` new members and one new member outside it: the segment's name,
    its members' and the outsider's names. The segment's rule reads the test's own tag in the
    members' figures (insights' recomputes keep tags, which other work sets)."""
    figures = Figures(insights_service, clock)
    names = [await benefits.points.member() for _ in range(members + 1)]
    for name in names[:-1]:
        await figures.put(member_id=name.removeprefix("members/"), tier="gold")
    async with grpc.aio.insecure_channel(insights_service.target) as channel:
        segment = await Segments(channel).create(figures.mine())
    assert segment.member_count == members
    return segment.name, names[:-1], names[-1]


async def test_each_member_of_a_segment_gets_exactly_one_coupon(
    benefits: Benefits, insights_service: RunningService, clock: Clock
) -> None:
    segment, members, outsider = await gold_segment(benefits, insights_service, clock, 5)
    stub = benefits.as_(MARKETING)
    created = (
        await stub.CreateCouponIssuance(to_segment("welcome-silver", segment))
    ).coupon_issuance
    assert (created.segment, created.tag) == (segment, "")

    (*_, done) = await watch(stub, created.name)
    assert done.state == pb.COUPON_ISSUANCE_STATE_SUCCEEDED
    assert (done.total_members, done.processed_members, done.issued_coupons) == (5, 5, 5)
    for member in members:
        assert len(await coupons_of(benefits, member, "welcome-silver")) == 1
    assert await coupons_of(benefits, outsider, "welcome-silver") == []


async def test_bad_segment_targets_are_refused_up_front(benefits: Benefits) -> None:
    stub = benefits.as_(MARKETING)
    both = pb.CreateCouponIssuanceRequest(
        coupon_issuance=pb.CouponIssuance(
            template="welcome-silver", tag="segment:vip", segment="segments/x"
        ),
        request_id=rid(),
    )
    failure = await fails(stub.CreateCouponIssuance(both))
    assert failure.fields == ["coupon_issuance.segment"]
    malformed = await fails(stub.CreateCouponIssuance(to_segment("welcome-silver", "tags/vip")))
    assert malformed.fields == ["coupon_issuance.segment"]
    unknown = await fails(
        stub.CreateCouponIssuance(to_segment("welcome-silver", "segments/no-such-segment"))
    )
    assert (unknown.code, unknown.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SEGMENT_NOT_FOUND",
    )


class UnreachableAtFirst:
    """The insights service as a replica sees it during a short outage: the first pages do
    not come, later ones do."""

    def __init__(self, real: GrpcDynamicSegments, failures: int) -> None:
        self.real = real
        self.failures = failures

    async def check(self, segment: str) -> None:
        await self.real.check(segment)

    async def page(self, segment: str, page_token: str, size: int) -> SegmentPage:
        if self.failures:
            self.failures -= 1
            raise SegmentUnreachable("UNAVAILABLE")
        return await self.real.page(segment, page_token, size)


async def test_insights_down_refuses_the_create_and_an_outage_only_delays_an_issuance(
    benefits: Benefits,
    insights_service: RunningService,
    identity_service: RunningService,
    points_service: RunningService,
    settings: Settings,
    clock: Clock,
) -> None:
    segment, members, _ = await gold_segment(benefits, insights_service, clock, 3)
    targets = {"points_target": points_service.target, "identity_target": identity_service.target}
    runner = ServiceRunner(settings)
    try:
        # insights down (nothing listens where this replica looks for it)
        nowhere = settings.model_copy(update=dict(targets, insights_target="127.0.0.1:9"))
        down = await runner.start(SPEC, nowhere, clock=clock)
        async with grpc.aio.insecure_channel(down.target) as channel:
            stub = As(benefits_service_pb2_grpc.BenefitsServiceStub, channel, MARKETING)
            refused = await fails(stub.CreateCouponIssuance(to_segment("welcome-gold", segment)))
        assert refused.code == grpc.StatusCode.UNAVAILABLE
        await runner.stop_all()

        # insights unreachable for the first two reads: the issuance waits, then finishes
        reachable = settings.model_copy(
            update=dict(targets, insights_target=insights_service.target)
        )
        flaky = UnreachableAtFirst(GrpcDynamicSegments(reachable), failures=2)
        os.environ["LOYALTY_BENEFITS_ISSUANCE_INTERVAL_SECONDS"] = "0.2"
        try:
            replica = await runner.start(SPEC, reachable, clock=clock, dynamic_segments=flaky)
        finally:
            os.environ["LOYALTY_BENEFITS_ISSUANCE_INTERVAL_SECONDS"] = "3600"
        async with grpc.aio.insecure_channel(replica.target) as channel:
            stub = As(benefits_service_pb2_grpc.BenefitsServiceStub, channel, MARKETING)
            created = await stub.CreateCouponIssuance(to_segment("welcome-gold", segment))
            (*_, done) = await watch(stub, created.coupon_issuance.name)
    finally:
        await runner.stop_all()
    assert flaky.failures == 0
    assert done.state == pb.COUPON_ISSUANCE_STATE_SUCCEEDED
    assert done.issued_coupons == 3
    for member in members:
        assert len(await coupons_of(benefits, member, "welcome-gold")) == 1
