"""Bearer tokens of API clients: what every service's interceptor accepts (pure)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from loyalty_kit.auth import (
    ServiceCredentials,
    SigningKey,
    TokenVerifier,
    development_keys,
    parse_keys,
)
from loyalty_kit.caller import ANONYMOUS, Caller
from loyalty_kit.errors import Unauthenticated

HOTEL = Caller(unit="hotel", client_id="hotel-pms", scopes=frozenset({"earn", "redeem"}))


def test_a_token_speaks_for_its_client_until_it_expires(tmp_path: Path) -> None:
    signing, public = development_keys(tmp_path)
    verifier = TokenVerifier(parse_keys(public), trust_headers=False)
    token, expires = signing.issue(HOTEL, 900)
    assert verifier.verify(token) == HOTEL
    assert expires - time.time() == pytest.approx(900, abs=2)
    old, _ = signing.issue(HOTEL, 60, now=time.time() - 3600)
    with pytest.raises(Unauthenticated) as raised:
        verifier.verify(old)
    assert raised.value.reason == "TOKEN_EXPIRED"


def test_a_token_from_another_key_or_tampered_with_is_refused(tmp_path: Path) -> None:
    _, public = development_keys(tmp_path / "a")
    other, _ = development_keys(tmp_path / "b")
    verifier = TokenVerifier(parse_keys(public), trust_headers=False)
    foreign, _ = other.issue(HOTEL, 900)
    forged = SigningKey(development_keys(tmp_path / "a")[0].kid, other.key).issue(HOTEL, 900)[0]
    for token in (foreign, forged, "not.a.token"):
        with pytest.raises(Unauthenticated) as raised:
            verifier.verify(token)
        assert raised.value.reason == "TOKEN_INVALID"


def test_caller_headers_count_only_while_trusted(tmp_path: Path) -> None:
    headers = HOTEL.metadata()
    assert TokenVerifier({}, trust_headers=True).caller_of(headers) == HOTEL
    with pytest.raises(Unauthenticated) as missing:
        TokenVerifier({}, trust_headers=False).caller_of(headers)
    assert missing.value.reason == "TOKEN_MISSING"
    assert TokenVerifier({}, trust_headers=True).caller_of(()) == ANONYMOUS
    signing, public = development_keys(tmp_path)
    token, _ = signing.issue(Caller(unit="mall", client_id="pos"), 900)
    strict = TokenVerifier(parse_keys(public), trust_headers=False)
    # A token wins over headers claiming more.
    bearer = (("authorization", f"Bearer {token}"), *headers)
    assert strict.caller_of(bearer) == Caller(unit="mall", client_id="pos")
    with pytest.raises(Unauthenticated):
        strict.caller_of((("authorization", "Basic abc"),))


def test_development_keys_are_made_once_per_folder(tmp_path: Path) -> None:
    first, public = development_keys(tmp_path)
    again, public_again = development_keys(tmp_path)
    assert (first.kid, public) == (again.kid, public_again)
    assert (tmp_path / "auth-keys.json").stat().st_mode & 0o077 == 0


def test_service_credentials_sign_for_the_call_and_reuse_the_token(tmp_path: Path) -> None:
    signing, public = development_keys(tmp_path)
    verifier = TokenVerifier(parse_keys(public), trust_headers=False)
    credentials = ServiceCredentials("benefits", signing, ttl_seconds=600)
    rewards = Caller(unit="cinema", client_id="benefits-rewards", scopes=frozenset({"redeem"}))
    first = credentials.metadata(rewards)
    assert verifier.caller_of(first) == rewards
    assert verifier.claims(first[0][1].removeprefix("Bearer "))["svc"] == "benefits"
    assert credentials.metadata(rewards) == first  # kept, not signed per call
    other = credentials.metadata(Caller(unit="hotel", client_id="benefits-rewards"))
    assert verifier.caller_of(other).unit == "hotel"
    # A token a minute from expiry is replaced before it is sent.
    credentials.ttl_seconds = 30
    credentials._tokens.clear()
    short = credentials.metadata(rewards)
    assert credentials.metadata(rewards) != short
    # Without a key the caller travels as headers, which only a trusting service accepts.
    assert ServiceCredentials("points", None).metadata(rewards) == rewards.metadata()


def test_a_token_carries_the_operator_a_client_acts_for(tmp_path: Path) -> None:
    signing, public = development_keys(tmp_path)
    verifier = TokenVerifier(parse_keys(public), trust_headers=True)
    console = Caller(
        unit="group", client_id="console", scopes=frozenset({"points:adjust"}), operator="op-42"
    )
    token, _ = signing.issue(console, 300)
    assert verifier.verify(token).operator == "op-42"
    assert verifier.verify(signing.issue(HOTEL, 300)[0]).operator == ""
    assert verifier.caller_of(console.metadata()) == console  # trusted headers (development)


def test_a_member_token_speaks_for_one_member_with_the_member_scopes_only(tmp_path: Path) -> None:
    signing, public = development_keys(tmp_path)
    verifier = TokenVerifier(parse_keys(public), trust_headers=False)
    member = Caller(
        client_id="member:m-1", scopes=frozenset({"self:read", "self:redeem"}), member="m-1"
    )
    assert verifier.verify(signing.issue(member, 300)[0]) == member
    # A member token that claims more (a unit, an operator, other scopes) is cut to the member's.
    greedy = Caller(
        unit="mall",
        client_id="member:m-1",
        scopes=frozenset({"admin", "earn", "self:read"}),
        operator="op-1",
        member="m-1",
    )
    seen = verifier.verify(signing.issue(greedy, 300)[0])
    assert (seen.unit, seen.scopes, seen.operator, seen.member) == (
        "",
        frozenset({"self:read"}),
        "",
        "m-1",
    )
    # The member is never taken from a header, trusted or not.
    trusting = TokenVerifier(parse_keys(public), trust_headers=True)
    assert trusting.caller_of((("x-loyalty-member", "m-1"),)).member == ""


class _Counting:
    """Counts the signature checks of a verifier (jwt.decode calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import jwt

        self.calls = 0
        real = jwt.decode

        def counted(*args: object, **kwargs: object) -> object:
            self.calls += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(jwt, "decode", counted)


def test_a_verified_token_is_checked_once_per_process_until_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signing, public = development_keys(tmp_path)
    now = [time.time()]
    verifier = TokenVerifier(parse_keys(public), trust_headers=False, clock=lambda: now[0])
    checks = _Counting(monkeypatch)
    token, expires = signing.issue(HOTEL, 900)
    for _ in range(5):
        assert verifier.verify(token) == HOTEL
    assert verifier.claims(token)["sub"] == HOTEL.client_id
    assert checks.calls == 1
    # Never kept past its exp: then it is checked again (and refused once really expired).
    now[0] = expires
    assert verifier.verify(token) == HOTEL  # the library's leeway still accepts it
    assert checks.calls == 2
    # The claims handed out are a copy: changing them changes nothing kept.
    verifier.claims(token)["sub"] = "someone-else"
    assert verifier.verify(token).client_id == HOTEL.client_id


def test_a_token_within_the_leeway_or_refused_is_never_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signing, public = development_keys(tmp_path)
    other, _ = development_keys(tmp_path / "other")
    verifier = TokenVerifier(parse_keys(public), trust_headers=False)
    checks = _Counting(monkeypatch)
    # Expired two seconds ago: still accepted within the leeway, but checked every time.
    lingering, _ = signing.issue(HOTEL, 60, now=time.time() - 62)
    assert verifier.verify(lingering) == HOTEL
    assert verifier.verify(lingering) == HOTEL
    assert checks.calls == 2
    forged = SigningKey(signing.kid, other.key).issue(HOTEL, 900)[0]
    for _ in range(2):
        with pytest.raises(Unauthenticated) as raised:
            verifier.verify(forged)
        assert raised.value.reason == "TOKEN_INVALID"
    assert checks.calls == 4
    assert verifier._verified == {}


def test_the_verified_tokens_kept_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signing, public = development_keys(tmp_path)
    monkeypatch.setattr(TokenVerifier, "CACHE_SIZE", 3)
    verifier = TokenVerifier(parse_keys(public), trust_headers=False)
    tokens = [signing.issue(HOTEL, 900)[0] for _ in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert set(verifier._verified) == set(tokens[2:])  # the least recently used gave way
    checks = _Counting(monkeypatch)
    verifier.verify(tokens[4])
    verifier.verify(tokens[0])
    assert checks.calls == 1
