"""The member code's format and window, without I/O: what a member shows, what a till accepts
and when, and how a bad or foreign code is told apart."""

from __future__ import annotations

import base64
import string
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from loyalty_identity.domain.member_code import (
    ACCEPTED_STEPS,
    RECOGNISED_STEPS,
    STEP_SECONDS,
    MemberCodeExpired,
    MemberCodeMalformed,
    MemberCodeSecret,
    MemberCodeUnknown,
    parse,
    step_of,
)

MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)
KEYS = st.binary(min_size=20, max_size=20)  # a TOTP secret's bytes
HANDLES = st.integers(0, 10**10 - 1).map(lambda n: f"{n:010d}")


def secret_of(handle: str, key: bytes) -> MemberCodeSecret:
    return MemberCodeSecret("m-1", handle, base64.b32encode(key).decode())


@given(HANDLES, KEYS, MOMENTS)
def test_a_code_is_66_the_handle_and_six_digits_and_reads_back(
    handle: str, key: bytes, now: datetime
) -> None:
    issued = secret_of(handle, key).issue(now)
    assert len(issued.code) == 18 and issued.code.isdigit()
    assert issued.code.startswith("66") and issued.code[2:12] == handle
    scanned = parse(f" {issued.code}\n", "identity.value")
    assert (scanned.handle, scanned.otp) == (handle, issued.code[12:])
    assert issued.valid_from <= now < issued.refresh_after
    assert issued.refresh_after - issued.valid_from == timedelta(seconds=STEP_SECONDS)
    assert issued.valid_until - issued.valid_from == timedelta(seconds=2 * STEP_SECONDS)


@given(HANDLES, KEYS, MOMENTS, st.floats(0, 2 * STEP_SECONDS - 0.001))
def test_a_code_is_accepted_from_its_step_until_the_end_of_the_next(
    handle: str, key: bytes, now: datetime, after: float
) -> None:
    secret = secret_of(handle, key)
    issued = secret.issue(now)
    scanned_at = issued.valid_from + timedelta(seconds=after)
    assert secret.step_scanned(parse(issued.code, "v"), scanned_at) == step_of(now)


@given(HANDLES, KEYS, MOMENTS, st.integers(ACCEPTED_STEPS, RECOGNISED_STEPS - 1))
def test_a_code_past_its_window_is_expired_then_unknown(
    handle: str, key: bytes, now: datetime, steps_later: int
) -> None:
    secret = secret_of(handle, key)
    issued = secret.issue(now)
    later = issued.valid_from + timedelta(seconds=steps_later * STEP_SECONDS)
    # Another step of the window sharing the one-time part would make the code right again.
    window = range(step_of(later) - ACCEPTED_STEPS + 1, step_of(later) + 1)
    assume(all(secret.code_for(s) != issued.code for s in window))
    with pytest.raises(MemberCodeExpired):
        secret.step_scanned(parse(issued.code, "v"), later)
    long_after = issued.valid_from + timedelta(seconds=(RECOGNISED_STEPS + 5) * STEP_SECONDS)
    recognised = range(step_of(long_after) - RECOGNISED_STEPS + 1, step_of(long_after) + 1)
    assume(all(secret.code_for(s) != issued.code for s in recognised))
    with pytest.raises(MemberCodeUnknown):
        secret.step_scanned(parse(issued.code, "v"), long_after)


@given(HANDLES, KEYS, KEYS, MOMENTS)
def test_a_code_of_another_secret_or_handle_is_unknown(
    handle: str, key: bytes, other_key: bytes, now: datetime
) -> None:
    assume(key != other_key)
    mine, theirs = secret_of(handle, key), secret_of(handle, other_key)
    code = theirs.issue(now).code
    assume(code not in {mine.code_for(step_of(now) - k) for k in range(RECOGNISED_STEPS)})
    with pytest.raises(MemberCodeUnknown):
        mine.step_scanned(parse(code, "v"), now)
    renamed = secret_of(f"{(int(handle) + 1) % 10**10:010d}", key)
    with pytest.raises(MemberCodeUnknown):
        renamed.step_scanned(parse(mine.issue(now).code, "v"), now)


@given(st.text(alphabet=string.digits + "x６ -", max_size=24))
def test_anything_but_18_digits_starting_66_is_malformed(text: str) -> None:
    code = text.strip()
    assume(not (len(code) == 18 and code.isascii() and code.isdigit() and code[:2] == "66"))
    with pytest.raises(MemberCodeMalformed) as raised:
        parse(text, "identity.value")
    assert [v.field for v in raised.value.field_violations] == ["identity.value"]
    assert raised.value.reason == "MEMBER_CODE_MALFORMED"


def test_new_secrets_and_handles_are_random() -> None:
    made = [MemberCodeSecret.new("m-1") for _ in range(50)]
    assert len({m.handle for m in made}) == 50 and len({m.secret for m in made}) == 50
    assert all(len(m.handle) == 10 and m.handle.isdigit() for m in made)
