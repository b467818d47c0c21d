"""The benefits service with the Huayue catalogue (plus a few test-only entries), the points
and tiers services of the run, and a client calling as a given unit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest_asyncio
from google.protobuf.message import Message
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.benefits.v1 import catalogue_pb2 as cat
from loyalty.common.v1 import money_pb2
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_devstack.demo import huayue_catalogue, huayue_ladder
from loyalty_kit import events
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.points.conftest import ADMIN, Points, points, programme
from tests.support.clients import As
from tests.support.events import stream_messages

__all__ = ["points", "programme"]

HOTEL = Caller(unit="hotel", client_id="hotel-pms", scopes=frozenset({"coupons:issue"}))
MALL = Caller(unit="mall", client_id="mall-pos", scopes=frozenset({"coupons:issue"}))
CINEMA = Caller(unit="cinema", client_id="cinema-app")
APP = Caller(unit="group", client_id="member-app", scopes=frozenset({"redeem"}))
MARKETING = Caller(unit="group", client_id="crm", scopes=frozenset({"coupons:issue"}))


def rid() -> str:
    return uuid.uuid4().hex


def cny(amount: str) -> money_pb2.Money:
    return money_pb2.Money(currency_code="CNY", amount=amount)


def catalogue_for_tests() -> cat.Catalogue:
    """Huayue's catalogue and a few entries only tests use: a hotel benefit every member has
    twice a calendar year, a group benefit, coupons with short or future validity, rewards with
    little stock."""
    catalogue = huayue_catalogue()
    catalogue.benefits.extend(
        [
            cat.Benefit(
                code="test-hotel-welcome-drink",
                name_en="Welcome drink",
                kind=cat.BENEFIT_KIND_FREE_SERVICE,
                unit="hotel",
                quota=2,
                quota_period=cat.QUOTA_PERIOD_CALENDAR_YEAR,
            ),
            cat.Benefit(
                code="test-group-service-line",
                name_en="Dedicated service line",
                kind=cat.BENEFIT_KIND_PRIORITY_ACCESS,
            ),
        ]
    )
    catalogue.coupon_templates.extend(
        [
            cat.CouponTemplate(
                code="test-mall-15",
                name_en="15% off at the mall",
                kind=cat.COUPON_KIND_PERCENTAGE_OFF,
                percentage="15",
                minimum_spend=cny("100"),
                unit="mall",
                valid_days=1,
            ),
            cat.CouponTemplate(
                code="test-next-year",
                name_en="Valid next year",
                kind=cat.COUPON_KIND_AMOUNT_OFF,
                amount=cny("10"),
                valid_from=_at("2099-01-01T00:00:00Z"),
                valid_until=_at("2100-01-01T00:00:00Z"),
            ),
        ]
    )
    catalogue.rewards.extend(
        [
            cat.Reward(
                code="test-scarce",
                name_en="One left",
                unit="mall",
                points=100,
                coupon_template="mall-voucher-100",
            ),
            cat.Reward(
                code="test-three",
                name_en="Three left",
                unit="mall",
                points=100,
                coupon_template="mall-voucher-100",
            ),
        ]
    )
    return catalogue


def _at(text: str) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


@dataclass
class Benefits:
    channel: grpc.aio.Channel
    tiers_channel: grpc.aio.Channel
    points: Points
    settings: Settings

    def as_(self, caller: Caller = HOTEL) -> Any:
        return As(benefits_service_pb2_grpc.BenefitsServiceStub, self.channel, caller)

    @property
    def tiers(self) -> Any:
        return As(tiers_service_pb2_grpc.TiersServiceStub, self.tiers_channel, ADMIN)

    async def entitlements(self, member: str, unit: str = "") -> pb.ListEntitlementsResponse:
        response: pb.ListEntitlementsResponse = await self.as_().ListEntitlements(
            pb.ListEntitlementsRequest(member=member, unit=unit)
        )
        return response

    async def tier_learned(self, member: str, tier: str) -> None:
        """Wait until TierChanged has reached the benefits service."""
        for _ in range(300):
            if (await self.entitlements(member)).tier == tier:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"benefits never learned that {member} is {tier}")

    async def consume(
        self,
        member: str,
        benefit: str,
        caller: Caller = HOTEL,
        unit: str | None = None,
        **more: Any,
    ) -> pb.ConsumeBenefitResponse:
        response: pb.ConsumeBenefitResponse = await self.as_(caller).ConsumeBenefit(
            pb.ConsumeBenefitRequest(
                member=member,
                request_id=more.pop("request_id", rid()),
                benefit=benefit,
                unit=caller.unit if unit is None else unit,
                order_id=more.pop("order_id", f"ord-{rid()[:8]}"),
            )
        )
        return response

    async def issue(
        self, template: str, *members: str, caller: Caller = MARKETING
    ) -> list[pb.Coupon]:
        response = await self.as_(caller).IssueCoupons(
            pb.IssueCouponsRequest(template=template, request_id=rid(), members=list(members))
        )
        return list(response.coupons)

    async def stock(self, reward: str) -> int:
        response = await self.as_(APP).ListRewards(pb.ListRewardsRequest(page_size=200))
        return int(next(r.available for r in response.rewards if r.code == reward))

    async def events(self, kind: type[Message], member_id: str, count: int = 1) -> list[Any]:
        """The `kind` events about a member on JetStream, once `count` of them have arrived."""
        client = await events.connect(self.settings.nats_url, "benefits-tests")
        js = client.jetstream()
        stream = events.stream_name(self.settings.event_namespace, "benefits")
        subject = events.subject_of(kind.DESCRIPTOR.full_name, self.settings.event_namespace)
        found: list[Any] = []
        try:
            for _ in range(100):
                found = [
                    e
                    for e in (
                        kind.FromString(m.data) for m in await stream_messages(js, subject, stream)
                    )
                    if any(f.name == "member_id" and v == member_id for f, v in e.ListFields())
                ]
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.1)
        finally:
            await client.close()
        return found


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def catalogue(benefits_service: RunningService) -> pb.UpdateCatalogueResponse:
    async with grpc.aio.insecure_channel(benefits_service.target) as channel:
        stub = As(benefits_service_pb2_grpc.BenefitsServiceStub, channel, ADMIN)
        response: pb.UpdateCatalogueResponse = await stub.UpdateCatalogue(
            pb.UpdateCatalogueRequest(
                catalogue=catalogue_for_tests(), request_id="tests-benefits-catalogue-v1"
            )
        )
        for reward, quantity in (("cinema-ticket", 50), ("test-scarce", 1), ("test-three", 3)):
            await stub.RestockReward(
                pb.RestockRewardRequest(
                    reward=reward, quantity=quantity, request_id=f"tests-restock-{reward}"
                )
            )
    return response


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def ladder(tiers_service: RunningService) -> None:
    async with grpc.aio.insecure_channel(tiers_service.target) as channel:
        stub = As(tiers_service_pb2_grpc.TiersServiceStub, channel, ADMIN)
        await stub.UpdateLadder(
            tiers_pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id="tests-ladder-v1")
        )


@pytest_asyncio.fixture(loop_scope="session")
async def benefits(
    benefits_service: RunningService,
    tiers_service: RunningService,
    catalogue: Any,
    ladder: None,
    points: Points,
    settings: Settings,
) -> AsyncIterator[Benefits]:
    async with (
        grpc.aio.insecure_channel(benefits_service.target) as channel,
        grpc.aio.insecure_channel(tiers_service.target) as tiers_channel,
    ):
        yield Benefits(channel, tiers_channel, points, settings)
