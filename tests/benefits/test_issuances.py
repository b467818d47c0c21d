"""Coupons for everyone with a tag (a segment of the identity service), issued in bulk in the
background, with progress; a service stopped mid-way finishes after a restart, nobody twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc, events_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty_benefits.adapters.segments import GrpcSegments
from loyalty_benefits.app import SPEC
from loyalty_benefits.service_layer.ports import SegmentPage
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.benefits.conftest import APP, CINEMA, HOTEL, MARKETING, Benefits, rid
from tests.support.clients import As
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

RUNNING = pb.COUPON_ISSUANCE_STATE_RUNNING


async def tagged(benefits: Benefits, tag: str, count: int) -> list[str]:
    """`count` new members with the tag (and another one each), by resource name."""
    members = []
    for _ in range(count):
        member = await benefits.points.member()
        await benefits.points.identity().UpdateTags(
            identity_pb.UpdateTagsRequest(
                member=member, request_id=rid(), add_tags=[tag, "bu:mall"]
            )
        )
        members.append(member)
    return members


def issuance(template: str, tag: str, chunk_size: int = 2, **more: Any) -> Any:
    return pb.CreateCouponIssuanceRequest(
        coupon_issuance=pb.CouponIssuance(template=template, tag=tag),
        request_id=more.pop("request_id", rid()),
        chunk_size=chunk_size,
    )


async def watch(stub: Any, name: str, until: Any = None) -> list[pb.CouponIssuance]:
    """GetCouponIssuance until `until(issuance)` (default: no longer running); what was seen."""
    seen: list[pb.CouponIssuance] = []
    for _ in range(400):
        got = (await stub.GetCouponIssuance(pb.GetCouponIssuanceRequest(name=name))).coupon_issuance
        seen.append(got)
        if (until or (lambda i: i.state != RUNNING))(got):
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"issuance {name} stands at {seen[-1]}")


async def coupons_of(benefits: Benefits, member: str, template: str) -> list[pb.Coupon]:
    listed = await benefits.as_(APP).ListCoupons(
        pb.ListCouponsRequest(member=member, page_size=500)
    )
    return [c for c in listed.coupons if c.template_code == template]


def segment() -> str:
    return f"segment:test-{uuid.uuid4().hex[:8]}"


async def test_everyone_with_the_tag_gets_one_coupon_and_progress_is_visible(
    benefits: Benefits,
) -> None:
    tag = segment()
    members = await tagged(benefits, tag, 5)
    (untagged,) = await tagged(benefits, segment(), 1)
    stub = benefits.as_(MARKETING)
    request = issuance("welcome-silver", tag, chunk_size=2)
    created = (await stub.CreateCouponIssuance(request)).coupon_issuance
    assert created.name.startswith("couponIssuances/")
    assert (created.template, created.tag, created.issuer_unit) == (
        "welcome-silver",
        tag,
        "group",
    )
    again = (await stub.CreateCouponIssuance(request)).coupon_issuance  # the client retries
    assert again.name == created.name

    seen = await watch(stub, created.name)
    done = seen[-1]
    assert done.state == pb.COUPON_ISSUANCE_STATE_SUCCEEDED
    assert (done.total_members, done.processed_members, done.issued_coupons) == (5, 5, 5)
    assert done.progress_percent == 100 and done.HasField("done_time")
    assert all(s.progress_percent <= 100 for s in seen)
    assert [s.processed_members for s in seen] == sorted(s.processed_members for s in seen)
    for member in members:
        (coupon,) = await coupons_of(benefits, member, "welcome-silver")
        assert coupon.source == f"issuance:{created.name.split('/')[1]}"
    assert await coupons_of(benefits, untagged, "welcome-silver") == []
    events = await benefits.events(events_pb2.CouponIssued, members[0].split("/")[1])
    assert [e.template_code for e in events] == ["welcome-silver"]


async def test_bad_issuances_are_refused_up_front(
    benefits: Benefits,
) -> None:
    stub = benefits.as_(MARKETING)
    failure = await fails(stub.CreateCouponIssuance(issuance("no-such-template", segment())))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "COUPON_TEMPLATE_NOT_FOUND",
    )
    failure = await fails(
        stub.CreateCouponIssuance(
            pb.CreateCouponIssuanceRequest(
                coupon_issuance=pb.CouponIssuance(), request_id=rid(), chunk_size=-1
            )
        )
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == ["coupon_issuance.template", "coupon_issuance.tag", "chunk_size"]
    failure = await fails(
        benefits.as_(APP).CreateCouponIssuance(issuance("welcome-silver", segment()))
    )
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    failure = await fails(  # the hotel issuing the mall's coupons
        benefits.as_(HOTEL).CreateCouponIssuance(issuance("test-mall-15", segment()))
    )
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    failure = await fails(
        stub.GetCouponIssuance(pb.GetCouponIssuanceRequest(name=f"couponIssuances/{uuid.uuid4()}"))
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "COUPON_ISSUANCE_NOT_FOUND",
    )
    failure = await fails(stub.GetCouponIssuance(pb.GetCouponIssuanceRequest(name="coupons/1")))
    assert failure.fields == ["name"]
    failure = await fails(  # progress is the issuers' business
        benefits.as_(CINEMA).GetCouponIssuance(
            pb.GetCouponIssuanceRequest(name=f"couponIssuances/{uuid.uuid4()}")
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")

    # A tag identity would refuse is refused before anything starts (by the same rule).
    for malformed in ("no namespace", "segment:", "Upper:case", "x" * 200):
        failure = await fails(stub.CreateCouponIssuance(issuance("welcome-silver", malformed)))
        assert failure.fields == ["coupon_issuance.tag"], malformed


class StopsAnsweringAfterTheFirstPage:
    """The identity service as a replica sees it that is about to be stopped: the first page
    arrives, the second never does (the replica is stopped while it waits)."""

    def __init__(self, real: GrpcSegments) -> None:
        self.real = real
        self.pages = 0

    async def page(self, tag: str, page_token: str, size: int) -> SegmentPage:
        if self.pages:
            await asyncio.Event().wait()
        self.pages += 1
        return await self.real.page(tag, page_token, size)


async def test_an_issuance_stopped_after_its_first_chunk_finishes_after_a_restart_once_each(
    benefits: Benefits,
    benefits_service: RunningService,
    identity_service: RunningService,
    points_service: RunningService,
    settings: Settings,
    clock: Any,
) -> None:
    tag = segment()
    members = await tagged(benefits, tag, 5)
    replica_settings = settings.model_copy(
        update={"points_target": points_service.target, "identity_target": identity_service.target}
    )
    runner = ServiceRunner(settings)
    try:
        segments = StopsAnsweringAfterTheFirstPage(GrpcSegments(replica_settings))
        stopping = await runner.start(SPEC, replica_settings, clock=clock, segments=segments)
        async with grpc.aio.insecure_channel(stopping.target) as channel:
            stub = As(benefits_service_pb2_grpc.BenefitsServiceStub, channel, MARKETING)
            created = await stub.CreateCouponIssuance(issuance("welcome-gold", tag, chunk_size=2))
            name = created.coupon_issuance.name
            await watch(stub, name, until=lambda i: i.processed_members == 2)
        await runner.stop_all()  # mid-way: the second chunk was being read
        halfway = await watch(benefits.as_(MARKETING), name, until=lambda i: True)
        assert (halfway[-1].state, halfway[-1].processed_members) == (RUNNING, 2)
        assert halfway[-1].progress_percent == 40

        # Two replicas start again and both carry the issuance on: each chunk commits once.
        await asyncio.gather(*(runner.start(SPEC, replica_settings, clock=clock) for _ in range(2)))
        (*_, done) = await watch(benefits.as_(MARKETING), name)
    finally:
        await runner.stop_all()
    assert done.state == pb.COUPON_ISSUANCE_STATE_SUCCEEDED
    assert (done.total_members, done.processed_members, done.issued_coupons) == (5, 5, 5)
    for member in members:
        assert len(await coupons_of(benefits, member, "welcome-gold")) == 1
