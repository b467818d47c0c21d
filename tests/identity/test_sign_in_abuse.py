"""Abuse of members' sign-in, over real gRPC channels: every refusal (wrong, expired, used and
exhausted codes, the limits per phone and per client address, a refresh token reused after its
rotation) counted in identity's /metrics by reason, and the refusals answering a registered
phone exactly as they answer a phone nobody holds."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

import grpc
import pytest
from loyalty.identity.v1 import member_sign_in_pb2 as pb

from tests.identity.test_sign_in import (  # noqa: F401 (the fixtures)
    SignIn,
    new_address,
    sign_in_identity,
    signin,
)
from tests.support.metrics import moved, scrape
from tests.support.rpc import Failure, fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

REFUSALS = "loyalty_member_sign_in_refusals_total"
MOBILE_PREFIXES = ("150", "151", "152", "153", "155", "156", "157", "158", "159")


def new_phone() -> tuple[str, str]:
    """A fresh mobile number (150-159, uuid digits) as typed, and in E.164."""
    digits = random.choice(MOBILE_PREFIXES) + f"{uuid.uuid4().int % 10**8:08d}"
    return digits, f"+86{digits}"


def other_than(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# --- counted ----------------------------------------------------------------------------------


async def test_each_sign_in_refusal_is_counted_by_its_reason(
    signin: SignIn,  # noqa: F811 (the fixture)
    sign_in_identity: Any,  # noqa: F811
) -> None:
    service = sign_in_identity[0]
    before = await scrape(service)
    typed, e164 = new_phone()

    started = await signin.start(typed)
    (code, *_) = await signin.codes(e164)
    assert (await fails(signin.start(typed))).reason == "SIGN_IN_RATE_LIMITED"  # per phone
    for _ in range(5):  # five wrong codes: the fifth exhausts the challenge
        await fails(signin.verify(started.challenge, other_than(code)))
    exhausted = await fails(signin.verify(started.challenge, code))
    assert exhausted.reason == "CODE_EXHAUSTED"

    signed = await signin.sign_in(typed, e164)
    signin.clock.advance(seconds=61)
    late = await signin.start(typed)
    signin.clock.advance(minutes=6)
    assert (await fails(signin.verify(late.challenge, code))).reason == "CODE_EXPIRED"
    missing = f"signInChallenges/{uuid.uuid4()}"
    assert (await fails(signin.verify(missing, code))).reason == "CHALLENGE_NOT_FOUND"

    # A stolen refresh token used after the member's app rotated it.
    stolen = signed.tokens.refresh_token
    await signin.as_().RefreshMemberToken(pb.RefreshMemberTokenRequest(refresh_token=stolen))
    reused = await fails(
        signin.as_().RefreshMemberToken(pb.RefreshMemberTokenRequest(refresh_token=stolen))
    )
    assert reused.reason == "REFRESH_TOKEN_REUSED"

    # One address asking codes for many phones.
    address = new_address()
    for _ in range(20):
        await signin.start(new_phone()[0], address)
    flood = await fails(signin.start(new_phone()[0], address))
    assert flood.metadata["limit"] == "client_address"

    after = await scrape(service)
    expected = {
        "CODE_WRONG": 5,
        "CODE_EXHAUSTED": 1,
        "CODE_EXPIRED": 1,
        "CHALLENGE_NOT_FOUND": 1,
        "SIGN_IN_RATE_LIMITED_PHONE": 1,
        "SIGN_IN_RATE_LIMITED_CLIENT_ADDRESS": 1,
        "REFRESH_TOKEN_REUSED": 1,
    }
    for reason, count in expected.items():
        assert moved(before, after, REFUSALS, reason=reason) == count, reason
    assert moved(before, after, REFUSALS) == sum(expected.values())
    # Labels name reasons only: no phone, code, challenge or address.
    assert not {e164, typed, code, address} & after.label_values()


async def test_a_used_code_and_a_revoked_session_are_counted(
    signin: SignIn,  # noqa: F811 (the fixture)
    sign_in_identity: Any,  # noqa: F811
) -> None:
    service = sign_in_identity[0]
    typed, e164 = new_phone()
    signin.clock.advance(seconds=61)
    started = await signin.start(typed)
    (code, *_) = await signin.codes(e164)
    signed = await signin.verify(started.challenge, code)
    before = await scrape(service)
    assert (await fails(signin.verify(started.challenge, code))).reason == "CODE_USED"
    token = signed.tokens.refresh_token
    await signin.as_().SignOut(pb.SignOutRequest(refresh_token=token))
    revoked = await fails(
        signin.as_().RefreshMemberToken(pb.RefreshMemberTokenRequest(refresh_token=token))
    )
    assert revoked.reason == "REFRESH_TOKEN_REVOKED"
    after = await scrape(service)
    assert moved(before, after, REFUSALS, reason="CODE_USED") == 1
    assert moved(before, after, REFUSALS, reason="REFRESH_TOKEN_REVOKED") == 1


# --- a registered phone is not told apart -----------------------------------------------------


def seen(failure: Failure) -> tuple[Any, ...]:
    """What a caller reads of a refusal, but for the seconds to wait (they depend on when)."""
    metadata = {k: v for k, v in failure.metadata.items() if k != "retry_after_seconds"}
    message = re.sub(r"in \d+ s", "in N s", failure.message)
    return (failure.code, failure.reason, failure.domain, message, metadata, failure.fields)


async def refusals_for(app: SignIn, typed: str, e164: str) -> list[tuple[Any, ...]]:
    """Every refusal a stranger can provoke for a phone, as the caller reads them."""
    app.clock.advance(seconds=61)
    started = await app.start(typed)
    answer = sorted(f.name for f, _ in started.ListFields())
    window = started.expire_time.ToSeconds() - started.resend_time.ToSeconds()
    (code, *_) = await app.codes(e164)
    found: list[tuple[Any, ...]] = [(tuple(answer), window)]
    found.append(seen(await fails(app.start(typed))))  # too soon
    for _ in range(6):  # wrong codes, then the challenge exhausted
        found.append(seen(await fails(app.verify(started.challenge, other_than(code)))))
    app.clock.advance(seconds=61)
    late = await app.start(typed)
    app.clock.advance(minutes=6)
    found.append(seen(await fails(app.verify(late.challenge, other_than(code)))))
    return found


async def test_refusals_answer_a_registered_and_an_unknown_phone_alike(
    signin: SignIn,  # noqa: F811 (the fixture)
) -> None:
    known, known_e164 = new_phone()
    await signin.sign_in(known, known_e164)
    unknown, unknown_e164 = new_phone()
    for_known = await refusals_for(signin, known, known_e164)
    for_unknown = await refusals_for(signin, unknown, unknown_e164)
    assert for_known == for_unknown
    reasons = [entry[1] for entry in for_known[1:]]
    assert reasons == [
        "SIGN_IN_RATE_LIMITED",
        *["CODE_WRONG"] * 5,
        "CODE_EXHAUSTED",
        "CODE_EXPIRED",
    ]
    assert all(entry[0] != grpc.StatusCode.NOT_FOUND for entry in for_known[1:])
