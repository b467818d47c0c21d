"""Two processes of points, tiers, benefits and the gateway side by side on one database and one
NATS: each runs the same scheduled rounds at the same moment (several rounds at once, as their
jobs and an operator's call would) and consumes the same durable consumers. Every member is
processed once and every event handled once: counted in the effects (postings, balances, tier
history, TierChanged and CouponIssued events, coupons, stock), not only in the answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.benefits.v1 import events_pb2 as benefits_events
from loyalty.common.v1 import money_pb2
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_benefits.adapters.points import GrpcPointsBank
from loyalty_benefits.app import SPEC as BENEFITS
from loyalty_benefits.domain.errors import PointsUnreachable
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.benefits.conftest import APP, MARKETING, Benefits
from tests.benefits.test_birthdays import birthday_coupons, born_on
from tests.benefits.test_issuances import coupons_of, issuance, segment, tagged, watch
from tests.benefits.test_rewards import available, buy
from tests.benefits.test_tier_events import changed
from tests.gateway.conftest import Gateway
from tests.gateway.test_checkout import member_with
from tests.gateway.test_checkout_recovery import begin, lease_runs_out, state_in, statement
from tests.gateway.test_composite import phone
from tests.points.conftest import ADMIN, Points, rid
from tests.reliability.replicas.conftest import Replicas
from tests.support.clients import As
from tests.support.clock import Clock
from tests.support.events import publish, published
from tests.support.rpc import fails
from tests.tiers.conftest import points_learn, tier_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

MEMBERS = 10  # per job: enough for chunks of 3 to interleave between replicas
ROUNDS = 3  # rounds per replica, all started at once


def stub(service: RunningService, stub_class: Any) -> tuple[grpc.aio.Channel, Any]:
    channel = grpc.aio.insecure_channel(service.target)
    return channel, As(stub_class, channel, ADMIN)


async def at_once(*rounds: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Every round `ROUNDS` times, all started together."""
    return await asyncio.gather(*(run() for _ in range(ROUNDS) for run in rounds))


def ids(members: list[str]) -> list[str]:
    return [m.split("/")[1] for m in members]


async def test_expiry_and_pending_activation_on_two_points_replicas_take_each_lot_once(
    points: Points, points_replicas: Replicas
) -> None:
    members = [await points.member() for _ in range(MEMBERS)]
    for member in members:
        # Two lots past their end (end of August and of September 2026): one expiry posting.
        await points.earn(member, "mall", "80.00", occur="2024-08-15T10:00:00+08:00")
        await points.earn(member, "mall", "30.00", occur="2024-09-20T10:00:00+08:00")
        await points.earn(member, "hotel", "100.00")  # 200 points, pending for 7 days
    week_later = timestamp(datetime.now(UTC) + timedelta(days=8))
    channels, admins = zip(
        *(stub(s, points_service_pb2_grpc.PointsServiceStub) for s in points_replicas.both),
        strict=True,
    )
    try:
        rounds = [
            lambda a=admin: a.RunExpiry(points_pb.RunExpiryRequest(chunk_size=3))  # type: ignore[misc]
            for admin in admins
        ] + [
            lambda a=admin: a.RunPendingActivation(  # type: ignore[misc]
                points_pb.RunPendingActivationRequest(as_of=week_later)
            )
            for admin in admins
        ]
        answers = await at_once(*rounds)
    finally:
        for channel in channels:
            await channel.close()
    expiries = [a for a in answers if isinstance(a, points_pb.RunExpiryResponse)]
    assert sum(a.points_expired for a in expiries) >= 110 * MEMBERS
    for member in members:
        expired = await points.as_().ListPostings(
            points_pb.ListPostingsRequest(member=member, kind=points_pb.POSTING_KIND_EXPIRE)
        )
        assert [p.points for p in expired.postings] == [-110], member
        balance = await points.balance(member)
        assert (balance.available, balance.pending) == (200, 0), member
    activated = await published(
        points_replicas.first.context.settings,
        "points",
        points_events.PendingPointsActivated,
        ids(members),
    )
    assert {m: len(found) for m, found in activated.items()} == dict.fromkeys(ids(members), 1)


async def test_year_end_and_grant_expiry_on_two_tiers_replicas_judge_each_member_once(
    points: Points, tiers: Any, tiers_replicas: Replicas
) -> None:
    judged = [await points.member() for _ in range(MEMBERS)]
    for member in judged:
        await points.earn(member, "mall", "21000.00")  # gold; nothing spent in its tier year
    years = [(await tier_of(tiers, m, "gold")).tier_year_end.ToDatetime(UTC) for m in judged]
    granted = [await points.member() for _ in range(MEMBERS)]
    ends = datetime.now(UTC) + timedelta(seconds=2)
    for member in granted:
        await tiers.CreateTierGrant(
            tiers_pb.CreateTierGrantRequest(
                member=member,
                request_id=rid(),
                tier_grant=tiers_pb.TierGrant(
                    tier="silver",
                    kind=tiers_pb.GRANT_KIND_GIFT,
                    reason="a gift",
                    end_time=timestamp(ends),
                ),
            )
        )
    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.1)
    year_over = timestamp(max(years) + timedelta(days=1))
    channels, admins = zip(
        *(stub(s, tiers_service_pb2_grpc.TiersServiceStub) for s in tiers_replicas.both),
        strict=True,
    )
    try:
        answers = await at_once(
            *(
                lambda a=admin: a.RunYearEnd(  # type: ignore[misc]
                    tiers_pb.RunYearEndRequest(as_of=year_over, chunk_size=3)
                )
                for admin in admins
            ),
            *(
                lambda a=admin: a.RunGrantExpiry(tiers_pb.RunGrantExpiryRequest())  # type: ignore[misc]
                for admin in admins
            ),
        )
    finally:
        for channel in channels:
            await channel.close()
    assert sum(a.downgraded for a in answers if isinstance(a, tiers_pb.RunYearEndResponse)) >= (
        MEMBERS
    )
    for member in judged:
        history = await tiers.ListTierHistory(tiers_pb.ListTierHistoryRequest(member=member))
        assert [(c.from_tier, c.to_tier, c.reason) for c in history.changes] == [
            ("gold", "silver", "downgraded"),
            ("basic", "gold", "qualified"),
        ], member
    for member in granted:
        history = await tiers.ListTierHistory(tiers_pb.ListTierHistoryRequest(member=member))
        assert [(c.from_tier, c.to_tier, c.reason) for c in history.changes] == [
            ("silver", "basic", "grant_ended"),
            ("basic", "silver", "granted"),
        ], member
    announced = await published(
        tiers_replicas.first.context.settings,
        "tiers",
        tier_events.TierChanged,
        ids(judged + granted),
        at_least=2,
    )
    assert {m: len(found) for m, found in announced.items()} == dict.fromkeys(
        ids(judged + granted), 2
    )


def benefits_admins(replicas: Replicas) -> tuple[list[grpc.aio.Channel], list[Any]]:
    pairs = [stub(s, benefits_service_pb2_grpc.BenefitsServiceStub) for s in replicas.both]
    return [c for c, _ in pairs], [a for _, a in pairs]


async def test_birthday_gifts_on_two_benefits_replicas_give_each_member_one_coupon(
    benefits: Benefits, benefits_replicas: Replicas
) -> None:
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    members = [await born_on(benefits, today) for _ in range(MEMBERS)]
    for member_id in ids(members):
        await publish(benefits.settings, "tiers", changed(member_id, "basic", "silver", now))
    for member in members:
        await benefits.tier_learned(member, "silver")
    channels, admins = benefits_admins(benefits_replicas)
    granted = 0
    try:
        for _ in range(100):  # until every birthday (identity's ProfileChanged) has arrived
            answers = await at_once(
                *(
                    lambda a=admin: a.RunBirthdayGifts(  # type: ignore[misc]
                        benefits_pb.RunBirthdayGiftsRequest(as_of=timestamp(now), chunk_size=3)
                    )
                    for admin in admins
                )
            )
            granted += sum(a.granted for a in answers)
            if all([await birthday_coupons(benefits, m) for m in members]):
                break
            await asyncio.sleep(0.05)
    finally:
        for channel in channels:
            await channel.close()
    for member in members:
        assert await birthday_coupons(benefits, member) == [f"birthday:{today.year}"], member
    assert granted == MEMBERS  # each replica counts only the gifts it gave
    issued = await published(
        benefits.settings, "benefits", benefits_events.CouponIssued, ids(members), at_least=2
    )
    assert {
        m: tuple(e.source for e in found if e.template_code == "birthday-gift")
        for m, found in issued.items()
    } == dict.fromkeys(ids(members), (f"birthday:{today.year}",))


async def test_a_coupon_issuance_carried_on_by_two_benefits_replicas_reaches_each_member_once(
    benefits: Benefits, benefits_replicas: Replicas
) -> None:
    tag = segment()
    members = await tagged(benefits, tag, MEMBERS)
    first, second = benefits_replicas.both
    channel = grpc.aio.insecure_channel(first.target)
    try:
        marketing = As(benefits_service_pb2_grpc.BenefitsServiceStub, channel, MARKETING)
        # The replica that creates it starts at once; both also find it running, many times.
        created = await marketing.CreateCouponIssuance(issuance("welcome-gold", tag, chunk_size=2))
        await at_once(*(s.root.issuer.run_pending for s in (first, second)))
        (*_, done) = await watch(marketing, created.coupon_issuance.name)
    finally:
        await channel.close()
    assert done.state == benefits_pb.COUPON_ISSUANCE_STATE_SUCCEEDED
    assert (done.total_members, done.processed_members, done.issued_coupons) == (
        MEMBERS,
        MEMBERS,
        MEMBERS,
    )
    for member in members:
        assert len(await coupons_of(benefits, member, "welcome-gold")) == 1, member
    issued = await published(
        benefits.settings, "benefits", benefits_events.CouponIssued, ids(members)
    )
    assert {m: len(found) for m, found in issued.items()} == dict.fromkeys(ids(members), 1)


class AnswersLost:
    """The points service debits, but its answers never arrive (a deadline, a lost reply)."""

    def __init__(self, real: GrpcPointsBank) -> None:
        self.real = real

    async def redeem(self, *args: Any) -> str:
        await self.real.redeem(*args)
        raise PointsUnreachable("DEADLINE_EXCEEDED")

    async def cancel(self, *args: Any) -> None:
        await self.real.cancel(*args)


async def test_reward_redemptions_left_half_way_are_finished_once_by_two_benefits_replicas(
    benefits: Benefits, benefits_replicas: Replicas, clock: Clock
) -> None:
    first, second = benefits_replicas.both
    settings = first.context.settings
    members = [await benefits.points.member() for _ in range(MEMBERS)]
    for member in members:
        await benefits.points.earn(member, "mall", "6000.00")
    stock = await benefits.stock("cinema-ticket")
    runner = ServiceRunner(settings)
    try:
        lossy = await runner.start(
            BENEFITS,
            settings,
            clock=clock,
            points_bank=AnswersLost(GrpcPointsBank(settings)),
        )
        async with grpc.aio.insecure_channel(lossy.target) as channel:
            app = As(benefits_service_pb2_grpc.BenefitsServiceStub, channel, APP)
            for member in members:
                pending = await fails(app.RedeemReward(buy(member, "cinema-ticket")))
                assert pending.reason == "REDEMPTION_PENDING"
    finally:
        await runner.stop_all()  # the replica that began them is gone
    assert [await available(benefits, m) for m in members] == [1000] * MEMBERS  # debited
    await at_once(
        *(
            lambda r=s.root.redemptions: r.recover(timedelta(0))  # type: ignore[misc]
            for s in (first, second)
        )
    )
    for member in members:
        statement = await benefits.points.as_().ListPostings(
            points_pb.ListPostingsRequest(member=member)
        )
        assert sorted(p.kind for p in statement.postings) == sorted(
            [points_pb.POSTING_KIND_EARN, points_pb.POSTING_KIND_REDEEM]
        ), member
        assert await available(benefits, member) == 1000
        assert len(await coupons_of(benefits, member, "cinema-ticket")) == 1, member
    assert await benefits.stock("cinema-ticket") == stock - MEMBERS
    redeemed = await published(
        benefits.settings, "benefits", benefits_events.RewardRedeemed, ids(members)
    )
    assert {m: len(found) for m, found in redeemed.items()} == dict.fromkeys(ids(members), 1)


async def test_checkouts_cut_short_are_settled_once_by_two_gateways(
    gateway: Gateway, gateway_replicas: Replicas
) -> None:
    first, second = gateway_replicas.both
    cut = []
    for _ in range(3):  # each costs seconds to set up (API clients, purchase, the step)
        number = phone()
        member, _ = await member_with(gateway, number, "mall", "400.00")
        checkouts, row, md = await begin(gateway, first, number, member, points=150)
        await checkouts.step(row, "points", md)  # taken; then that gateway "stops"
        cut.append((member, row))
    for _, row in cut:
        await lease_runs_out(first, row)
    settled = await at_once(*(s.root.flows.checkout.recover for s in (first, second)))
    # Each attempt is claimed by one round (their jobs, every 2 s, may take some first).
    assert sum(settled) <= len(cut)
    state_of = state_in(first)
    async with await gateway.session("hotel", "earn", "redeem") as hotel:
        for member, row in cut:
            assert await state_of(row.checkout_id) == "open"
            assert await statement(gateway, member) == [
                "POSTING_KIND_EARN",
                "POSTING_KIND_REDEEM",
                "POSTING_KIND_REDEMPTION_CANCEL",
            ], member
            balance = (await hotel.get(f"/v1/{member}/balance")).json()["balance"]
            assert balance["available"] == "400"


def handled(replicas: Replicas, consumer: str) -> tuple[int, int]:
    """Events the consumer handled and duplicates it dropped, on both replicas together."""
    found = [c for s in replicas.both for c in s.consumers if c.name == consumer]
    assert len(found) == 2
    return sum(c.handled for c in found), sum(c.duplicates for c in found)


async def test_events_consumed_by_two_replicas_are_handled_once_each(
    points: Points,
    benefits: Benefits,
    tiers: Any,
    points_replicas: Replicas,
    tiers_replicas: Replicas,
    benefits_replicas: Replicas,
) -> None:
    """PointsEarned reaches both tiers replicas, each event twice (the same event id under
    another message id, as a redelivery); the TierChanged that follows reaches both points
    and both benefits replicas. The copy carries another posting id, so only the inbox can
    tell that it is the same event."""
    members = ids([await points.member() for _ in range(MEMBERS)])
    before = handled(tiers_replicas, "tiers-activity")
    now = datetime.now(UTC)
    sent = []
    for member_id in members:
        event = points_events.PointsEarned(
            member_id=member_id,
            posting_id=str(uuid.uuid4()),
            unit="mall",
            order_id=f"ord-{rid()[:8]}",
            qualifying_spend_base=money_pb2.Money(currency_code="CNY", amount="6000.00"),
            points=6000,
            occurred_at=timestamp(now),
        )
        sent.append((await publish(points.service.context.settings, "points", event), event))
    for event_id, event in sent:
        copy = points_events.PointsEarned()
        copy.CopyFrom(event)
        copy.posting_id = str(uuid.uuid4())
        await publish(points.service.context.settings, "points", copy, event_id, rid())
    for member_id in members:
        silver = await tier_of(tiers, f"members/{member_id}", "silver")
        assert [p.current for p in silver.progress] == ["6000.00"], member_id
        await points_learn(points, f"members/{member_id}", "silver")
        await benefits.tier_learned(f"members/{member_id}", "silver")
    for _ in range(100):  # the copies are dropped a moment after the first arrived
        after = handled(tiers_replicas, "tiers-activity")
        if after[1] - before[1] >= MEMBERS:
            break
        await asyncio.sleep(0.05)
    assert after[1] - before[1] == MEMBERS  # every copy dropped by the inbox
    assert after[0] - before[0] >= MEMBERS
    announced = await published(
        points.service.context.settings, "tiers", tier_events.TierChanged, members
    )
    assert {m: len(found) for m, found in announced.items()} == dict.fromkeys(members, 1)
    welcomed = await published(benefits.settings, "benefits", benefits_events.CouponIssued, members)
    assert {m: [e.source for e in found] for m, found in welcomed.items()} == {
        m: ["welcome:silver"] for m in members
    }
    for member_id in members:
        history = await tiers.ListTierHistory(
            tiers_pb.ListTierHistoryRequest(member=f"members/{member_id}")
        )
        assert len(history.changes) == 1, member_id
