"""Members signing in themselves (pure: no I/O): sign-in codes, their challenges and limits,
and the sessions refresh tokens belong to.

- A code is 6 random digits, valid 5 minutes, with 5 attempts. Only its keyed hash is kept
  (HMAC-SHA256 under a key of the service, bound to its challenge), never the code.
- Sending codes is limited per phone (1 a minute, 5 an hour) and per client address (20 an
  hour), counted from the challenges sent; a refusal says when to try again.
- A challenge is checked once at a time: a right code uses it up (USED); a wrong one counts an
  attempt and says how many are left; the last wrong attempt exhausts it (EXHAUSTED); after
  its expiry it answers CODE_EXPIRED. Each refusal has its own reason.
- A session holds a chain of refresh tokens: each refresh uses one up and gives the next. A
  token used twice means it was copied: the whole session is revoked (REFRESH_TOKEN_REUSED).
- An access token is refused by identity before it expires once its session is ended (signed
  out, signed out everywhere, a reused refresh token, merged away, erased:
  MEMBER_TOKEN_REVOKED) or its member erased (MEMBER_ERASED). Other services accept it until it
  expires (10 minutes at most): they verify its signature only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from loyalty_kit.errors import FailedPrecondition, NotFound, ResourceExhausted, Unauthenticated

CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS = 5
ACCESS_TOKEN_LIFETIME = timedelta(minutes=10)
REFRESH_TOKEN_LIFETIME = timedelta(days=30)
CODE = re.compile(rf"^[0-9]{{{CODE_DIGITS}}}$")
CHALLENGES = "signInChallenges/"
SESSIONS = "memberSessions/"


def new_code() -> str:
    """Six digits, uniformly random."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_digest(key: bytes, challenge_id: str, code: str) -> bytes:
    """How a code is kept: HMAC-SHA256 under the service's key, bound to its challenge (the
    same code of another challenge hashes differently)."""
    return hmac.digest(key, f"sign-in-code\x00{challenge_id}\x00{code}".encode(), "sha256")


def is_code(text: str) -> bool:
    return CODE.match(text) is not None


# --- rate limits ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limit:
    count: int
    window: timedelta

    def wait(self, sent: Sequence[datetime], now: datetime) -> timedelta:
        """How long until one more may be sent, given when the earlier ones were (zero: now)."""
        recent = sorted(t for t in sent if t > now - self.window)
        if len(recent) < self.count:
            return timedelta(0)
        # The oldest of the last `count` must leave the window first.
        return recent[len(recent) - self.count] + self.window - now


@dataclass(frozen=True)
class RateLimits:
    per_phone: tuple[Limit, ...] = (
        Limit(1, timedelta(minutes=1)),
        Limit(5, timedelta(hours=1)),
    )
    per_address: tuple[Limit, ...] = (Limit(20, timedelta(hours=1)),)

    @property
    def longest(self) -> timedelta:
        return max(limit.window for limit in (*self.per_phone, *self.per_address))

    def phone_wait(self, sent: Sequence[datetime], now: datetime) -> timedelta:
        return max((limit.wait(sent, now) for limit in self.per_phone), default=timedelta(0))

    def address_wait(self, sent: Sequence[datetime], now: datetime) -> timedelta:
        return max((limit.wait(sent, now) for limit in self.per_address), default=timedelta(0))

    def check(
        self, phone_sent: Sequence[datetime], address_sent: Sequence[datetime], now: datetime
    ) -> None:
        """Refuse (RESOURCE_EXHAUSTED, with when to try again) a code over either limit."""
        for which, wait in (
            ("phone", self.phone_wait(phone_sent, now)),
            ("client_address", self.address_wait(address_sent, now)),
        ):
            if wait > timedelta(0):
                raise SignInRateLimited(which, wait)


class SignInRateLimited(ResourceExhausted):
    reason = "SIGN_IN_RATE_LIMITED"

    def __init__(self, which: str, wait: timedelta) -> None:
        seconds = max(1, int(wait.total_seconds() + 0.999))
        super().__init__(
            f"too many sign-in codes for this {which.replace('_', ' ')}: try again in {seconds} s",
            metadata={"limit": which, "retry_after_seconds": str(seconds)},
        )
        self.retry_after_seconds = float(seconds)


# --- challenges -------------------------------------------------------------------------------
class ChallengeState(Enum):
    PENDING = "pending"
    USED = "used"
    EXHAUSTED = "exhausted"


@dataclass
class Challenge:
    challenge_id: str
    code_hash: bytes
    created_at: datetime
    expires_at: datetime
    attempts: int = 0
    state: ChallengeState = ChallengeState.PENDING

    @classmethod
    def issue(cls, challenge_id: str, key: bytes, code: str, now: datetime) -> Challenge:
        return cls(challenge_id, code_digest(key, challenge_id, code), now, now + CODE_LIFETIME)

    def attempt(self, key: bytes, code: str, now: datetime) -> CodeRefused | None:
        """Try a code: None when it is right (the challenge is used up), else the refusal to
        answer once this attempt is kept (a wrong code counts; the last one exhausts)."""
        if self.state is ChallengeState.USED:
            return CodeUsed()
        if self.state is ChallengeState.EXHAUSTED:
            return CodeExhausted()
        if now >= self.expires_at:
            return CodeExpired()
        if hmac.compare_digest(code_digest(key, self.challenge_id, code), self.code_hash):
            self.state = ChallengeState.USED
            self.attempts += 1
            return None
        self.attempts += 1
        left = max(0, MAX_ATTEMPTS - self.attempts)
        if left == 0:
            self.state = ChallengeState.EXHAUSTED
        return CodeWrong(left)


class CodeRefused(FailedPrecondition):
    """A code that does not sign in: each case its own reason."""


class CodeWrong(CodeRefused):
    reason = "CODE_WRONG"

    def __init__(self, attempts_left: int) -> None:
        super().__init__(
            f"the code is wrong: {attempts_left} attempts left",
            metadata={"attempts_left": str(attempts_left)},
        )
        self.attempts_left = attempts_left


class CodeExpired(CodeRefused):
    reason = "CODE_EXPIRED"

    def __init__(self) -> None:
        super().__init__("the code has expired: ask for a new one")


class CodeUsed(CodeRefused):
    reason = "CODE_USED"

    def __init__(self) -> None:
        super().__init__("the code was used already: ask for a new one")


class CodeExhausted(CodeRefused):
    reason = "CODE_EXHAUSTED"

    def __init__(self) -> None:
        super().__init__("too many wrong codes: ask for a new one")


class ChallengeNotFound(NotFound):
    reason = "CHALLENGE_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("no such sign-in challenge")


# --- sessions and refresh tokens --------------------------------------------------------------
def new_refresh_token() -> str:
    """256 random bits, URL-safe: opaque to everyone, the holder's proof of the session."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """How a refresh token is kept and found (never the token itself)."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class RefreshToken:
    session_id: str
    member_id: str
    expires_at: datetime
    used_at: datetime | None
    session_revoked_at: datetime | None

    def refusal(self, now: datetime) -> RefreshRefused | None:
        """Why this token refreshes nothing (None: it may). A used token is a copy: the caller
        revokes the session before answering REFRESH_TOKEN_REUSED."""
        if self.session_revoked_at is not None:
            return RefreshTokenRevoked()
        if self.used_at is not None:
            return RefreshTokenReused()
        if now >= self.expires_at:
            return RefreshTokenExpired()
        return None


class RefreshRefused(Unauthenticated):
    """A refresh token that gives no new tokens: sign in again."""


class RefreshTokenInvalid(RefreshRefused):
    reason = "REFRESH_TOKEN_INVALID"

    def __init__(self) -> None:
        super().__init__("the refresh token is not valid: sign in again")


class RefreshTokenRevoked(RefreshRefused):
    reason = "REFRESH_TOKEN_REVOKED"

    def __init__(self) -> None:
        super().__init__("the session was ended: sign in again")


class RefreshTokenReused(RefreshRefused):
    reason = "REFRESH_TOKEN_REUSED"

    def __init__(self) -> None:
        super().__init__("the refresh token was used before: the session is ended, sign in again")


class RefreshTokenExpired(RefreshRefused):
    reason = "REFRESH_TOKEN_EXPIRED"

    def __init__(self) -> None:
        super().__init__("the refresh token has expired: sign in again")


# --- access tokens after their session ended ------------------------------------------------
def access_refusal(
    member_state: str, session_given: bool, session_found: bool, revoked_reason: str | None
) -> Unauthenticated | None:
    """Why identity refuses a member's access token still within its lifetime (None: it does
    not): its member erased, or its session (the `sid` claim) ended or unknown."""
    if member_state == "erased":
        return MemberTokenOfErased()
    if session_given and not session_found:
        return MemberTokenRevoked("unknown_session")
    if revoked_reason is not None:
        return MemberTokenRevoked(revoked_reason or "ended")
    return None


class MemberTokenRevoked(Unauthenticated):
    reason = "MEMBER_TOKEN_REVOKED"

    def __init__(self, why: str) -> None:
        super().__init__(
            "the member's session was ended: sign in again", metadata={"session_ended": why}
        )


class MemberTokenOfErased(Unauthenticated):
    reason = "MEMBER_ERASED"

    def __init__(self) -> None:
        super().__init__("the member was erased: the token speaks for no one")
