"""The sign-in rules without a server: codes, their challenges (attempts, expiry, use), the
limits per phone and per address, and refresh tokens' refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loyalty_identity.domain.sign_in import (
    CODE_LIFETIME,
    MAX_ATTEMPTS,
    Challenge,
    ChallengeState,
    CodeExhausted,
    CodeExpired,
    CodeUsed,
    CodeWrong,
    Limit,
    RateLimits,
    RefreshToken,
    RefreshTokenExpired,
    RefreshTokenReused,
    RefreshTokenRevoked,
    SignInRateLimited,
    code_digest,
    is_code,
    new_code,
    new_refresh_token,
    token_digest,
)

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
KEY = b"k" * 32
codes = st.integers(0, 999_999).map(lambda n: f"{n:06d}")


def challenge(code: str = "123456") -> Challenge:
    return Challenge.issue("c-1", KEY, code, T0)


def test_codes_are_six_digits_and_kept_only_as_a_keyed_hash_bound_to_the_challenge() -> None:
    assert all(is_code(new_code()) for _ in range(200))
    issued = challenge("123456")
    assert b"123456" not in issued.code_hash
    assert issued.code_hash == code_digest(KEY, "c-1", "123456")
    assert code_digest(KEY, "c-2", "123456") != issued.code_hash  # another challenge
    assert code_digest(b"o" * 32, "c-1", "123456") != issued.code_hash  # another key
    assert issued.expires_at - issued.created_at == CODE_LIFETIME == timedelta(minutes=5)


@given(code=codes, wrong=st.lists(codes, max_size=MAX_ATTEMPTS + 2))
def test_wrong_codes_count_down_and_the_right_one_signs_in_only_while_attempts_remain(
    code: str, wrong: list[str]
) -> None:
    issued = challenge(code)
    wrong = [w for w in wrong if w != code]
    for index, attempt in enumerate(wrong):
        refused = issued.attempt(KEY, attempt, T0)
        if index < MAX_ATTEMPTS:
            assert isinstance(refused, CodeWrong)
            assert refused.attempts_left == MAX_ATTEMPTS - index - 1
        else:
            assert isinstance(refused, CodeExhausted)
    outcome = issued.attempt(KEY, code, T0 + timedelta(minutes=1))
    if len(wrong) >= MAX_ATTEMPTS:
        assert isinstance(outcome, CodeExhausted) and issued.state is ChallengeState.EXHAUSTED
    else:
        assert outcome is None and issued.state is ChallengeState.USED
        assert isinstance(issued.attempt(KEY, code, T0), CodeUsed)  # once


def test_a_code_expires_after_five_minutes_and_each_refusal_has_its_reason() -> None:
    issued = challenge("123456")
    assert isinstance(issued.attempt(KEY, "123456", T0 + CODE_LIFETIME), CodeExpired)
    assert issued.attempts == 0  # an expired code counts no attempt
    reasons = {CodeWrong(1).reason, CodeExpired().reason, CodeUsed().reason}
    assert reasons | {CodeExhausted().reason} == {
        "CODE_WRONG",
        "CODE_EXPIRED",
        "CODE_USED",
        "CODE_EXHAUSTED",
    }


@given(
    offsets=st.lists(st.integers(0, 7200), max_size=12),
    count=st.integers(1, 6),
    window=st.integers(1, 3600),
)
def test_a_limit_waits_exactly_until_one_more_fits_in_its_window(
    offsets: list[int], count: int, window: int
) -> None:
    now = T0 + timedelta(seconds=7200)
    sent = [T0 + timedelta(seconds=o) for o in offsets]
    limit = Limit(count, timedelta(seconds=window))
    wait = limit.wait(sent, now)

    def inside(at: datetime) -> int:
        return sum(1 for t in sent if t > at - limit.window)

    assert wait >= timedelta(0)
    assert inside(now + wait) < count  # after the wait, one more fits
    if wait > timedelta(0):
        assert inside(now + wait - timedelta(microseconds=1)) >= count  # and not before


def test_the_limits_name_what_is_over_and_when_to_try_again() -> None:
    limits = RateLimits()
    limits.check([], [], T0)
    with pytest.raises(SignInRateLimited) as minute:
        limits.check([T0 - timedelta(seconds=20)], [], T0)
    assert minute.value.metadata["limit"] == "phone"
    assert minute.value.retry_after_seconds == 40
    hour = [T0 - timedelta(minutes=m) for m in (2, 10, 20, 30, 40)]
    with pytest.raises(SignInRateLimited) as hourly:
        limits.check(hour, [], T0)
    assert hourly.value.retry_after_seconds == 20 * 60
    many = [T0 - timedelta(seconds=s) for s in range(20)]
    with pytest.raises(SignInRateLimited) as address:
        limits.check([], many, T0)
    assert address.value.metadata["limit"] == "client_address"
    assert address.value.kind.value == "RESOURCE_EXHAUSTED"


def test_a_refresh_token_is_refused_once_used_revoked_or_expired() -> None:
    token = new_refresh_token()
    assert len(token) >= 40 and token_digest(token) != token.encode()
    fresh = RefreshToken("s-1", "m-1", T0 + timedelta(days=30), None, None)
    assert fresh.refusal(T0) is None
    assert isinstance(fresh.refusal(T0 + timedelta(days=30)), RefreshTokenExpired)
    used = RefreshToken("s-1", "m-1", T0 + timedelta(days=30), T0, None)
    assert isinstance(used.refusal(T0), RefreshTokenReused)
    revoked = RefreshToken("s-1", "m-1", T0 + timedelta(days=30), T0, T0)
    assert isinstance(revoked.refusal(T0), RefreshTokenRevoked)
