"""Transfers between members, partner exchange (积分互通) and referrals, over a real channel."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.points.v1 import points_service_pb2 as pb

from tests.points.conftest import Points, rid
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_family_pools_points_within_the_limits(points: Points) -> None:
    parent, child = await points.member(), await points.member()
    await points.earn(child, "mall", "30000.00", occur="2025-12-01T10:00:00+08:00")
    sent = await points.as_().TransferPoints(
        pb.TransferPointsRequest(
            member=child, request_id=rid(), to_member=parent, points=12_000, reason="family pool"
        )
    )
    assert sent.posting.points == -12_000 and sent.balance.available == 18_000
    assert (await points.balance(parent)).available == 12_000
    # The transferred points keep their issuing unit and their expiry (end of Dec 2027).
    received = await points.as_().GetBalance(
        pb.GetBalanceRequest(member=parent, expiring_within_days=800)
    )
    assert received.balance.expiring_soon == 12_000

    too_big = await fails(
        points.as_().TransferPoints(
            pb.TransferPointsRequest(
                member=child, request_id=rid(), to_member=parent, points=20_001
            )
        )
    )
    assert (too_big.code, too_big.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LIMIT_EXCEEDED")
    await points.earn(child, "mall", "100000.00")
    await points.as_().TransferPoints(
        pb.TransferPointsRequest(member=child, request_id=rid(), to_member=parent, points=20_000)
    )
    daily = await fails(
        points.as_().TransferPoints(
            pb.TransferPointsRequest(
                member=child, request_id=rid(), to_member=parent, points=20_000
            )
        )
    )
    assert daily.reason == "LIMIT_EXCEEDED" and daily.metadata["sent_today"] == "32000"
    itself = await fails(
        points.as_().TransferPoints(
            pb.TransferPointsRequest(member=child, request_id=rid(), to_member=child, points=1)
        )
    )
    assert itself.fields == ["to_member"]


async def test_points_convert_to_airline_miles_and_back(points: Points) -> None:
    member = await points.member()
    await points.earn(member, "mall", "60000.00")
    out = await points.as_().ExchangeToPartner(
        pb.ExchangeToPartnerRequest(
            member=member, request_id=rid(), partner="skyair", points=1_000, partner_account="SA-1"
        )
    )
    assert (out.partner_units, out.posting.points, out.balance.available) == (100, -1_000, 59_000)

    for bad_points, why in ((999, "at least 1000"), (1_005, "a multiple of 10")):
        failure = await fails(
            points.as_().ExchangeToPartner(
                pb.ExchangeToPartnerRequest(
                    member=member,
                    request_id=rid(),
                    partner="skyair",
                    points=bad_points,
                    partner_account="SA-1",
                )
            )
        )
        assert failure.fields == ["points"] and why in failure.message
    await points.as_().ExchangeToPartner(
        pb.ExchangeToPartnerRequest(
            member=member, request_id=rid(), partner="skyair", points=49_000, partner_account="SA-1"
        )
    )
    capped = await fails(
        points.as_().ExchangeToPartner(
            pb.ExchangeToPartnerRequest(
                member=member,
                request_id=rid(),
                partner="skyair",
                points=1_000,
                partner_account="SA-1",
            )
        )
    )
    assert capped.reason == "LIMIT_EXCEEDED"

    undone = await points.as_().ReversePartnerExchange(
        pb.ReversePartnerExchangeRequest(
            member=member, request_id=rid(), posting_id=out.posting.posting_id
        )
    )
    assert undone.posting.points == 1_000 and undone.balance.available == 11_000
    again = await fails(
        points.as_().ReversePartnerExchange(
            pb.ReversePartnerExchangeRequest(
                member=member, request_id=rid(), posting_id=out.posting.posting_id
            )
        )
    )
    assert again.reason == "ALREADY_REVERSED"

    conversion = pb.ExchangeFromPartnerRequest(
        member=member,
        request_id=rid(),
        partner="skyair",
        partner_units=250,
        partner_reference="SA-TX-9",
    )
    miles_in = await points.as_().ExchangeFromPartner(conversion)
    assert miles_in.posting.points == 2_000 and miles_in.balance.available == 13_000
    # The partner sends the same transaction again with a new request id: credited once.
    conversion.request_id = rid()
    replayed = await fails(points.as_().ExchangeFromPartner(conversion))
    assert (replayed.code, replayed.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "PARTNER_REFERENCE_USED",
    )
    assert replayed.metadata["posting_id"] == miles_in.posting.posting_id
    assert (await points.balance(member)).available == 13_000
    unknown = await fails(
        points.as_().ExchangeFromPartner(
            pb.ExchangeFromPartnerRequest(
                member=member,
                request_id=rid(),
                partner="oceanline",
                partner_units=1,
                partner_reference="x",
            )
        )
    )
    assert unknown.fields == ["partner"]


async def test_both_sides_of_a_referral_are_rewarded_once_on_the_first_purchase(
    points: Points,
) -> None:
    referrer, newcomer = await points.member(), await points.member()
    recorded = await points.as_().RecordReferral(
        pb.RecordReferralRequest(member=newcomer, request_id=rid(), referrer=referrer)
    )
    assert not recorded.rewarded
    await points.earn(newcomer, "cinema", "10.00")  # 15 points, and the bonuses
    await points.earn(newcomer, "cinema", "10.00")  # no second bonus
    assert (await points.balance(newcomer)).available == 15 + 15 + 200
    assert (await points.balance(referrer)).available == 500
    kinds = await points.as_().ListPostings(
        pb.ListPostingsRequest(member=referrer, kind=pb.POSTING_KIND_REFERRAL_BONUS)
    )
    assert [p.points for p in kinds.postings] == [500]

    again = await points.as_().RecordReferral(
        pb.RecordReferralRequest(member=newcomer, request_id=rid(), referrer=referrer)
    )
    assert again.rewarded
    other = await points.member()
    taken = await fails(
        points.as_().RecordReferral(
            pb.RecordReferralRequest(member=newcomer, request_id=rid(), referrer=other)
        )
    )
    assert (taken.code, taken.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_REFERRED")
    shopper = await points.member()
    await points.earn(shopper, "mall", "10.00")
    late = await fails(
        points.as_().RecordReferral(
            pb.RecordReferralRequest(member=shopper, request_id=rid(), referrer=other)
        )
    )
    assert late.reason == "REFEREE_ALREADY_ACTIVE"
    itself = await fails(
        points.as_().RecordReferral(
            pb.RecordReferralRequest(member=other, request_id=rid(), referrer=other)
        )
    )
    assert itself.fields == ["referrer"]


async def test_a_referrer_merged_since_is_paid_as_the_survivor(points: Points) -> None:
    referrer, survivor, newcomer = (
        await points.member(),
        await points.member(),
        await points.member(),
    )
    await points.as_().RecordReferral(
        pb.RecordReferralRequest(member=newcomer, request_id=rid(), referrer=referrer)
    )
    await points.identity().MergeMembers(
        identity_pb.MergeMembersRequest(survivor=survivor, absorbed=referrer, request_id=rid())
    )
    for _ in range(200):  # points learns the merge from identity's event
        try:
            await points.earn(referrer, "mall", "1.00")
        except grpc.aio.AioRpcError:
            break
        await asyncio.sleep(0.05)
    await points.earn(newcomer, "cinema", "10.00")  # the first purchase: both bonuses
    assert (await points.balance(newcomer)).available == 15 + 200
    bonuses = await points.as_().ListPostings(
        pb.ListPostingsRequest(member=survivor, kind=pb.POSTING_KIND_REFERRAL_BONUS)
    )
    assert [p.points for p in bonuses.postings] == [500]
