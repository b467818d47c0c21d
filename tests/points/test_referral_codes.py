"""A member's referral code (推荐码) and the referrals it brought, over real channels: the code
is made on the first ask and the same after (a member's own token reads its own), a newcomer
is referred with it instead of the referrer's ID, and the referrer lists whom it referred
(masked IDs), whether they were rewarded and the points each brought."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_kit.caller import Caller
from loyalty_points.domain.referral_codes import ALPHABET, CODE_LENGTH, masked_member

from tests.points.conftest import Points, rid
from tests.points.test_unmerge import merge
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


def own_token(member: str) -> Caller:
    member_id = member.removeprefix("members/")
    return Caller(
        client_id=f"member:{member_id}", scopes=frozenset({"self:read"}), member=member_id
    )


async def code_of_member(points: Points, member: str, caller: Caller | None = None) -> str:
    got = await points.as_(caller).GetReferralCode(pb.GetReferralCodeRequest(member=member))
    assert got.referral_code.member == member
    return str(got.referral_code.code)


async def test_a_members_code_is_made_once_and_the_same_after(points: Points) -> None:
    member, other = await points.member(), await points.member()

    codes = await asyncio.gather(*(code_of_member(points, member) for _ in range(5)))

    assert len(set(codes)) == 1
    (code,) = set(codes)
    assert len(code) == CODE_LENGTH and set(code) <= set(ALPHABET)
    assert await code_of_member(points, member, own_token(member)) == code
    assert await code_of_member(points, other) != code
    foreign = await fails(
        points.as_(own_token(member)).GetReferralCode(pb.GetReferralCodeRequest(member=other))
    )
    assert (foreign.code, foreign.reason) == (grpc.StatusCode.PERMISSION_DENIED, "MEMBER_MISMATCH")
    unknown = await fails(
        points.as_().GetReferralCode(
            pb.GetReferralCodeRequest(member="members/00000000-0000-0000-0000-00000000abcd")
        )
    )
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "MEMBER_NOT_FOUND")


async def test_a_newcomer_referred_by_code_pays_the_referrer_who_lists_it(
    points: Points,
) -> None:
    referrer, rewarded, waiting = (
        await points.member(),
        await points.member(),
        await points.member(),
    )
    code = await code_of_member(points, referrer)
    typed = f"{code[:4].lower()}-{code[4:]}"  # as a member types it

    recorded = await points.as_().RecordReferral(
        pb.RecordReferralRequest(member=rewarded, request_id=rid(), referral_code=typed)
    )
    assert (recorded.referrer_member_id, recorded.rewarded) == (
        referrer.removeprefix("members/"),
        False,
    )
    await points.as_().RecordReferral(
        pb.RecordReferralRequest(member=waiting, request_id=rid(), referrer=referrer)
    )
    await points.earn(rewarded, "cinema", "10.00")  # the first purchase pays both bonuses

    mine = await points.as_(own_token(referrer)).ListReferrals(
        pb.ListReferralsRequest(member=referrer)
    )
    assert [(r.referred_member, r.rewarded, r.points) for r in mine.referrals] == [
        (masked_member(waiting.removeprefix("members/")), False, 0),
        (masked_member(rewarded.removeprefix("members/")), True, 500),
    ]
    assert all(r.referred_member.startswith("****") for r in mine.referrals)
    assert mine.referrals[1].HasField("reward_time") and not mine.referrals[0].HasField(
        "reward_time"
    )
    first = await points.as_().ListReferrals(pb.ListReferralsRequest(member=referrer, page_size=1))
    rest = await points.as_().ListReferrals(
        pb.ListReferralsRequest(member=referrer, page_size=1, page_token=first.next_page_token)
    )
    assert [r.referred_member for r in (*first.referrals, *rest.referrals)] == [
        r.referred_member for r in mine.referrals
    ]
    assert rest.next_page_token == ""
    foreign = await fails(
        points.as_(own_token(rewarded)).ListReferrals(pb.ListReferralsRequest(member=referrer))
    )
    assert foreign.reason == "MEMBER_MISMATCH"


async def test_a_referral_names_exactly_one_referrer_and_a_code_someone_has(
    points: Points,
) -> None:
    newcomer, referrer = await points.member(), await points.member()
    code = await code_of_member(points, referrer)

    both = await fails(
        points.as_().RecordReferral(
            pb.RecordReferralRequest(
                member=newcomer, request_id=rid(), referrer=referrer, referral_code=code
            )
        )
    )
    assert (both.code, both.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["referral_code"])
    neither = await fails(
        points.as_().RecordReferral(pb.RecordReferralRequest(member=newcomer, request_id=rid()))
    )
    assert neither.fields == ["referrer"]
    malformed = await fails(
        points.as_().RecordReferral(
            pb.RecordReferralRequest(member=newcomer, request_id=rid(), referral_code="0OIL")
        )
    )
    assert malformed.fields == ["referral_code"]
    unused = "".join(reversed(code)) if "".join(reversed(code)) != code else "ZZZZZZZZ"
    nobody = await fails(
        points.as_().RecordReferral(
            pb.RecordReferralRequest(member=newcomer, request_id=rid(), referral_code=unused)
        )
    )
    assert (nobody.code, nobody.reason) == (grpc.StatusCode.NOT_FOUND, "REFERRAL_CODE_NOT_FOUND")
    own = await code_of_member(points, newcomer)
    itself = await fails(
        points.as_().RecordReferral(
            pb.RecordReferralRequest(member=newcomer, request_id=rid(), referral_code=own)
        )
    )
    assert itself.fields == ["referrer"]


async def test_a_merged_members_code_refers_for_the_survivor(points: Points) -> None:
    absorbed, survivor, newcomer = (
        await points.member(),
        await points.member(),
        await points.member(),
    )
    code = await code_of_member(points, absorbed)
    keeper, kept_absorbed = await points.member(), await points.member()
    own = await code_of_member(points, keeper)
    await code_of_member(points, kept_absorbed)

    await merge(points, survivor, absorbed)
    await merge(points, keeper, kept_absorbed)

    recorded = await points.as_().RecordReferral(
        pb.RecordReferralRequest(member=newcomer, request_id=rid(), referral_code=code)
    )
    assert recorded.referrer_member_id == survivor.removeprefix("members/")
    # The survivor had no code of its own: it shares the one it absorbed, made back then.
    assert await code_of_member(points, survivor) == code
    assert await code_of_member(points, keeper) == own  # its own code stays its own
    gone = await fails(points.as_().GetReferralCode(pb.GetReferralCodeRequest(member=absorbed)))
    assert (gone.code, gone.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MEMBER_MERGED")
    await points.earn(newcomer, "cinema", "10.00")  # the first purchase pays both bonuses
    mine = await points.as_().ListReferrals(pb.ListReferralsRequest(member=survivor))
    assert [(r.rewarded, r.points) for r in mine.referrals] == [(True, 500)]
