"""Tiers held by grant (status match, gift) or paid membership, over real channels."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty_kit.caller import Caller
from loyalty_kit.timestamps import moment, timestamp

from tests.points.conftest import HOTEL, Points, rid
from tests.support.rpc import fails
from tests.tiers.conftest import points_learn, tier_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

MALL = Caller(unit="mall", client_id="mall-pos", scopes=frozenset({"earn", "redeem"}))


def history(changes: Any) -> list[tuple[str, str, str]]:
    return [(c.from_tier, c.to_tier, c.reason) for c in changes]


async def test_a_status_match_lifts_the_tier_until_it_ends_then_the_activity_decides(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    await points.earn(member, "mall", "6000.00")
    await tier_of(tiers, member, "silver")
    ends = datetime.now(UTC) + timedelta(seconds=3)
    granted = await tiers.CreateTierGrant(
        pb.CreateTierGrantRequest(
            member=member,
            request_id=rid(),
            tier_grant=pb.TierGrant(
                tier="platinum",
                kind=pb.GRANT_KIND_STATUS_MATCH,
                reason="status match: Skyline Airways Gold",
                end_time=timestamp(ends),
            ),
        )
    )
    assert granted.tier == "platinum"
    assert granted.tier_grant.state == pb.GRANT_STATE_ACTIVE
    assert granted.tier_grant.name.startswith(f"{member}/tierGrants/")
    now = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
    assert (now.tier, now.earned_tier, now.grant.name) == (
        "platinum",
        "silver",
        granted.tier_grant.name,
    )
    assert now.next_tier == "diamond"
    await points_learn(points, member, "platinum")  # TierChanged went out

    listed = await tiers.ListTierGrants(pb.ListTierGrantsRequest(member=member))
    assert [g.name for g in listed.tier_grants] == [granted.tier_grant.name]

    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.2)
    expired = await tiers.RunGrantExpiry(pb.RunGrantExpiryRequest())
    assert expired.ended >= 1 and expired.changed >= 1
    after = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
    assert (after.tier, after.earned_tier, after.HasField("grant")) == ("silver", "silver", False)
    changes = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=member))
    assert history(changes.changes) == [
        ("platinum", "silver", "grant_ended"),
        ("silver", "platinum", "granted"),
        ("basic", "silver", "qualified"),
    ]
    assert moment(changes.changes[0].change_time, "change_time") == moment(
        granted.tier_grant.end_time, "end_time"
    )
    await points_learn(points, member, "silver")
    # Idempotent: nothing left to end for this member.
    await tiers.RunGrantExpiry(pb.RunGrantExpiryRequest())
    again = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=member))
    assert len(again.changes) == 3
    listed = await tiers.ListTierGrants(pb.ListTierGrantsRequest(member=member))
    assert listed.tier_grants[0].state == pb.GRANT_STATE_ENDED


async def test_activity_above_a_grant_upgrades_and_a_revoked_grant_falls_back(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    gift = await tiers.CreateTierGrant(
        pb.CreateTierGrantRequest(
            member=member,
            request_id=rid(),
            tier_grant=pb.TierGrant(
                tier="silver",
                kind=pb.GRANT_KIND_GIFT,
                reason="VIP gift",
                end_time=timestamp(datetime.now(UTC) + timedelta(days=90)),
            ),
        )
    )
    assert gift.tier == "silver"
    await points.earn(member, "mall", "21000.00")
    gold = await tier_of(tiers, member, "gold")
    assert gold.earned_tier == "gold" and not gold.HasField("grant")
    revoked = await tiers.RevokeTierGrant(
        pb.RevokeTierGrantRequest(
            name=gift.tier_grant.name, reason="gift withdrawn", request_id=rid()
        )
    )
    assert revoked.tier == "gold"  # the activity holds more than the gift did
    assert revoked.tier_grant.state == pb.GRANT_STATE_REVOKED
    assert revoked.tier_grant.end_reason == "gift withdrawn"
    twice = await fails(
        tiers.RevokeTierGrant(
            pb.RevokeTierGrantRequest(name=gift.tier_grant.name, reason="again", request_id=rid())
        )
    )
    assert (twice.code, twice.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "GRANT_NOT_ACTIVE")


async def test_a_paid_membership_renews_and_a_refund_ends_it(points: Points, tiers: Any) -> None:
    member = await points.member()
    hotel = tiers.with_caller(HOTEL)
    order = f"MS-{uuid.uuid4().hex[:8]}"
    request = pb.PurchaseMembershipRequest(
        member=member, unit="hotel", tier="gold", order_id=order, months=12, request_id=rid()
    )
    bought = await hotel.PurchaseMembership(request)
    assert (bought.tier, bought.renewed) == ("gold", False)
    assert bought.tier_grant.kind == pb.GRANT_KIND_PAID_MEMBERSHIP
    assert bought.tier_grant.unit == "hotel"
    first_end = moment(bought.tier_grant.end_time, "end_time")
    assert await hotel.PurchaseMembership(request) == bought  # a retry: the first answer
    await points_learn(points, member, "gold")

    renewal = f"MS-{uuid.uuid4().hex[:8]}"
    renewed = await hotel.PurchaseMembership(
        pb.PurchaseMembershipRequest(
            member=member, unit="hotel", tier="gold", order_id=renewal, months=6, request_id=rid()
        )
    )
    assert renewed.renewed and renewed.tier_grant.name == bought.tier_grant.name
    assert list(renewed.tier_grant.order_ids) == [order, renewal]
    assert moment(renewed.tier_grant.end_time, "end_time").date() == (
        datetime(first_end.year + (first_end.month + 5) // 12, (first_end.month + 5) % 12 + 1, 1)
    ).date().replace(day=first_end.day)

    reused = await fails(
        hotel.PurchaseMembership(
            pb.PurchaseMembershipRequest(
                member=member, unit="hotel", tier="gold", order_id=order, months=1, request_id=rid()
            )
        )
    )
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "MEMBERSHIP_ORDER_USED")
    refund = pb.RefundMembershipRequest(member=member, unit="hotel", order_id=order)
    refund.request_id = rid()
    other_unit = await fails(tiers.with_caller(MALL).RefundMembership(refund))
    assert (other_unit.code, other_unit.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "UNIT_MISMATCH",
    )
    refunded = await hotel.RefundMembership(refund)
    assert refunded.tier == "basic"
    assert refunded.tier_grant.state == pb.GRANT_STATE_REVOKED
    changes = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=member))
    assert history(changes.changes) == [
        ("gold", "basic", "membership_refunded"),
        ("basic", "gold", "membership_purchased"),
    ]
    await points_learn(points, member, "basic")
    unknown = await fails(
        hotel.RefundMembership(
            pb.RefundMembershipRequest(
                member=member, unit="hotel", order_id="no-such-order", request_id=rid()
            )
        )
    )
    assert (unknown.code, unknown.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "MEMBERSHIP_ORDER_NOT_FOUND",
    )


async def test_concurrent_purchases_with_one_order_buy_one_period(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    hotel = tiers.with_caller(HOTEL)
    order = f"MS-{uuid.uuid4().hex[:8]}"

    async def buy() -> pb.PurchaseMembershipResponse | grpc.aio.AioRpcError:
        try:
            response: pb.PurchaseMembershipResponse = await hotel.PurchaseMembership(
                pb.PurchaseMembershipRequest(
                    member=member,
                    unit="hotel",
                    tier="platinum",
                    order_id=order,
                    months=3,
                    request_id=rid(),
                )
            )
            return response
        except grpc.aio.AioRpcError as error:
            return error

    results = await asyncio.gather(*(buy() for _ in range(10)))
    bought = [r for r in results if isinstance(r, pb.PurchaseMembershipResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(bought) == 1
    assert {r.code() for r in refused} == {grpc.StatusCode.ALREADY_EXISTS}
    grants = await tiers.ListTierGrants(pb.ListTierGrantsRequest(member=member))
    assert len(grants.tier_grants) == 1 and list(grants.tier_grants[0].order_ids) == [order]


async def test_bad_grants_and_memberships_are_refused_with_field_violations(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    past = timestamp(datetime.now(UTC) - timedelta(days=1))
    bad = await fails(
        tiers.CreateTierGrant(
            pb.CreateTierGrantRequest(
                member=member,
                request_id=rid(),
                tier_grant=pb.TierGrant(
                    tier="basic", kind=pb.GRANT_KIND_GIFT, reason=" ", end_time=past
                ),
            )
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(bad.fields) == [
        "tier_grant.end_time",
        "tier_grant.reason",
        "tier_grant.tier",
    ]
    paid = await fails(
        tiers.CreateTierGrant(
            pb.CreateTierGrantRequest(
                member=member,
                request_id=rid(),
                tier_grant=pb.TierGrant(
                    tier="gold", kind=pb.GRANT_KIND_PAID_MEMBERSHIP, reason="free"
                ),
            )
        )
    )
    assert paid.fields == ["tier_grant.kind"]
    not_admin = await fails(
        tiers.with_caller(HOTEL).CreateTierGrant(
            pb.CreateTierGrantRequest(member=member, request_id=rid())
        )
    )
    assert (not_admin.code, not_admin.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SCOPE_REQUIRED",
    )
    unknown = await fails(
        tiers.RevokeTierGrant(
            pb.RevokeTierGrantRequest(
                name=f"{member}/tierGrants/{uuid.uuid4()}", reason="x", request_id=rid()
            )
        )
    )
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "GRANT_NOT_FOUND")
    badly_named = await fails(
        tiers.RevokeTierGrant(
            pb.RevokeTierGrantRequest(name=f"{member}/grants/1", reason="x", request_id=rid())
        )
    )
    assert badly_named.fields == ["name"]
    membership = await fails(
        tiers.with_caller(HOTEL).PurchaseMembership(
            pb.PurchaseMembershipRequest(
                member=member, unit="hotel", tier="emerald", order_id="", months=0, request_id=rid()
            )
        )
    )
    assert sorted(membership.fields) == ["months", "order_id", "tier"]
    no_unit = await fails(
        tiers.with_caller(HOTEL).PurchaseMembership(
            pb.PurchaseMembershipRequest(member=member, tier="gold", order_id="x", months=1)
        )
    )
    assert no_unit.fields == ["unit"]
