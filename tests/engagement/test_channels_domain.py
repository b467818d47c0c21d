"""The webhook channel's rules without I/O: the signature a receiver checks, the backoff between
attempts, which answers are tried again, endpoint URLs, unsubscribe tokens."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from loyalty_engagement.domain.channels import (
    Backoff,
    new_token,
    retryable,
    signature,
    token_hash,
    url_problem,
    verify,
)

SECRET = "whsec-0123456789abcdef"
BODY = b'{"body": "Spring sale", "message_id": "m-1"}'


def test_a_signature_verifies_over_the_same_body_and_secret_within_five_minutes() -> None:
    header = signature(SECRET, 1_800_000_000, BODY)
    assert header.startswith("t=1800000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, BODY, 1_800_000_000 + 300)
    assert not verify(SECRET, header, BODY, 1_800_000_000 + 301)  # a replay
    assert not verify(SECRET, header, BODY + b" ", 1_800_000_000)  # another body
    assert not verify("another-secret-xyz", header, BODY, 1_800_000_000)
    forged = header.replace("t=1800000000", "t=1800000100")  # a later time, the same mac
    assert not verify(SECRET, forged, BODY, 1_800_000_100)
    assert not verify(SECRET, "garbage", BODY, 1_800_000_000)


@given(attempts=st.integers(1, 60), draw=st.floats(0, 1))
def test_the_backoff_doubles_from_the_base_jittered_into_its_upper_half_and_capped(
    attempts: int, draw: float
) -> None:
    backoff = Backoff(base_seconds=5, cap_seconds=3600)
    ceiling = min(3600, 5 * 2 ** (attempts - 1))
    wait = backoff.after(attempts, draw).total_seconds()
    assert ceiling / 2 <= wait <= ceiling


def test_passing_troubles_are_tried_again_and_a_refusal_is_not() -> None:
    assert [retryable(s) for s in (None, 500, 502, 503, 408, 429)] == [True] * 6
    assert [retryable(s) for s in (400, 401, 403, 404, 410, 422)] == [False] * 6


def test_an_endpoint_is_https_or_http_to_this_machine() -> None:
    assert url_problem("https://sms.example.com/hooks") == ""
    assert url_problem("http://127.0.0.1:8081/hooks") == ""
    assert url_problem("http://sms.example.com/hooks") != ""
    assert url_problem("ftp://sms.example.com/") != ""
    assert url_problem("not a url") != ""


def test_tokens_are_random_and_kept_by_a_hash_that_does_not_show_them() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000 and all(len(t) == 32 for t in tokens)
    token = tokens.pop()
    assert token_hash(token) == token_hash(token) and token not in token_hash(token)
