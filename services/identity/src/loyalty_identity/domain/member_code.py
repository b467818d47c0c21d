"""The member code (会员码): the 18 digits a member shows at any till, as a QR code or a barcode.

`66` + the member's handle (10 digits) + a 6-digit TOTP (RFC 6238, 30 s steps) of the member's
code secret. The handle names the member in the code without being the member ID (random,
unique, replaced with the secret on rotation); the TOTP makes the code change every step, so a
photo of an old code is worth nothing. A till resolves a code within the step it was made for
and the next one, once: the service keeps which (handle, step) were used.

Guessing is limited: a handle whose codes were wrong too often lately (5 in 5 minutes) is
locked until the oldest of those leaves the window (MEMBER_CODE_LOCKED, with when to try again),
so nobody walks the million one-time parts at a till; a client's wrong codes across handles are
limited too (30 in 5 minutes). The limits judge the times of the wrong guesses the service keeps,
and say when a guess counts for nothing any more (the service forgets it then).

No I/O here: the secret is made and kept sealed by the adapters; this module makes the codes and
judges a scanned one against a secret and the time.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

import pyotp
from loyalty_kit.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)

from loyalty_identity.domain.sign_in import Limit

# The reserved identity type a till resolves a member code with (ResolveMember): never an
# identity type of the catalogue, never stored as an identity.
MEMBER_CODE_TYPE = "member_code"
PREFIX = "66"  # a member code, among the codes a till's scanner reads
HANDLE_DIGITS = 10
OTP_DIGITS = 6
CODE_DIGITS = len(PREFIX) + HANDLE_DIGITS + OTP_DIGITS  # 18
STEP_SECONDS = 30
# A code is accepted in the step it was made for and in the next one: a member who opened the
# code just before the step turned still has a full step to reach the till.
ACCEPTED_STEPS = 2
# An older code that was once right is told apart as expired (a photo, a late scan), for this
# many steps; older still, it is unknown, as a code that was never right.
RECOGNISED_STEPS = 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MemberCodeMalformed(InvalidArgument):
    reason = "MEMBER_CODE_MALFORMED"

    def __init__(self, field: str) -> None:
        description = f"a member code is {CODE_DIGITS} digits starting with {PREFIX}"
        super().__init__(
            f"{field}: {description}",
            field_violations=[FieldViolation(field, description, self.reason)],
        )


class MemberCodeExpired(FailedPrecondition):
    reason = "MEMBER_CODE_EXPIRED"

    def __init__(self) -> None:
        super().__init__("this member code has expired: ask the member to refresh it")


class MemberCodeUsed(FailedPrecondition):
    reason = "MEMBER_CODE_USED"

    def __init__(self) -> None:
        super().__init__(
            "this member code was already scanned: ask the member for a new one "
            "(it changes every 30 seconds)"
        )


class MemberCodeUnknown(NotFound):
    reason = "MEMBER_CODE_UNKNOWN"

    def __init__(self) -> None:
        super().__init__("this member code is not one the platform issued")


# Wrong guesses made "later" than a scan's now still count for it, this far: calls in flight at
# once, and replicas whose clocks differ a little, take their times in another order.
GUESS_CLOCK_SLACK = timedelta(minutes=1)
WRONG_PER_HANDLE = Limit(5, timedelta(minutes=5))
WRONG_PER_CLIENT = Limit(30, timedelta(minutes=5))


class MemberCodeLocked(ResourceExhausted):
    """Too many wrong codes lately, for this handle or from this client: nothing of the code is
    judged (a right one neither) until the wait is over."""

    reason = "MEMBER_CODE_LOCKED"

    def __init__(self, which: str, wait: timedelta) -> None:
        seconds = max(1, int(wait.total_seconds() + 0.999))
        whose = "this member code" if which == "handle" else "this client"
        super().__init__(
            f"too many wrong member codes for {whose}: try again in {seconds} s",
            metadata={"limit": which, "retry_after_seconds": str(seconds)},
        )
        self.which = which
        self.retry_after_seconds = float(seconds)


@dataclass(frozen=True)
class GuessLimits:
    """How many wrong codes a handle (whoever scans it) and a client (whichever handles) may
    see in a window before their scans are refused for a while."""

    per_handle: Limit = WRONG_PER_HANDLE
    per_client: Limit = WRONG_PER_CLIENT

    @property
    def longest(self) -> timedelta:
        return max(self.per_handle.window, self.per_client.window)

    def forgettable_before(self, now: datetime) -> datetime:
        """Wrong guesses made before this count for no scan any more: not for one now, nor for
        one at a replica whose clock is behind by up to GUESS_CLOCK_SLACK."""
        return now - self.longest - GUESS_CLOCK_SLACK

    def check(
        self, handle_wrong: Sequence[datetime], client_wrong: Sequence[datetime], now: datetime
    ) -> None:
        """Refuse (MEMBER_CODE_LOCKED, with when to try again) a scan over either limit."""
        for which, limit, wrong in (
            ("handle", self.per_handle, handle_wrong),
            ("client", self.per_client, client_wrong),
        ):
            wait = limit.wait([t for t in wrong if t <= now + GUESS_CLOCK_SLACK], now)
            if wait > timedelta(0):
                raise MemberCodeLocked(which, wait)


@dataclass(frozen=True)
class ScannedCode:
    """A code as read at a till: the handle it names and the one-time part."""

    handle: str
    otp: str


def parse(text: str, field: str) -> ScannedCode:
    """A scanned code (surrounding blanks ignored), or MEMBER_CODE_MALFORMED naming `field`."""
    code = text.strip()
    if len(code) != CODE_DIGITS or not code.isascii() or not code.isdigit():
        raise MemberCodeMalformed(field)
    if not code.startswith(PREFIX):
        raise MemberCodeMalformed(field)
    handle_end = len(PREFIX) + HANDLE_DIGITS
    return ScannedCode(code[len(PREFIX) : handle_end], code[handle_end:])


def step_of(at: datetime) -> int:
    """The TOTP step `at` falls in (seconds since the Unix epoch, by 30)."""
    return int((at - _EPOCH).total_seconds()) // STEP_SECONDS


def step_start(step: int) -> datetime:
    return _EPOCH + timedelta(seconds=step * STEP_SECONDS)


def new_handle() -> str:
    """A random handle: 10 digits (uniqueness is the store's)."""
    return f"{secrets.randbelow(10**HANDLE_DIGITS):0{HANDLE_DIGITS}d}"


def new_secret() -> str:
    """A random TOTP secret (160 bits, base32, as RFC 4226 recommends)."""
    return pyotp.random_base32()


@dataclass(frozen=True)
class CodeLookup:
    """What a scan finds of a handle: its secret (None: no such handle), and when the handle's
    and the scanning client's recent wrong guesses were made."""

    secret: MemberCodeSecret | None
    handle_wrong: list[datetime]
    client_wrong: list[datetime]


@dataclass(frozen=True)
class IssuedCode:
    """A member's code for one step, and the times a member app shows it by."""

    code: str
    valid_from: datetime  # the start of the step it was made for
    refresh_after: datetime  # the next step: a new code is there from then on
    valid_until: datetime  # the end of the next step: a till refuses it from then on


@dataclass(frozen=True)
class MemberCodeSecret:
    """A member's code secret and handle (the secret in clear: only in memory)."""

    member_id: str
    handle: str
    secret: str

    @staticmethod
    def new(member_id: str) -> MemberCodeSecret:
        return MemberCodeSecret(member_id, new_handle(), new_secret())

    @cached_property
    def _totp(self) -> pyotp.TOTP:
        return pyotp.TOTP(self.secret, digits=OTP_DIGITS, interval=STEP_SECONDS)

    def _otp(self, step: int) -> str:
        return self._totp.generate_otp(step)

    def _matches(self, scanned: ScannedCode, steps: range) -> int | None:
        """The latest of `steps` whose one-time part is the scanned one's (each compared in
        constant time), or None."""
        matched = [s for s in steps if hmac.compare_digest(self._otp(s), scanned.otp)]
        return max(matched) if matched else None

    def code_for(self, step: int) -> str:
        return f"{PREFIX}{self.handle}{self._otp(step)}"

    def issue(self, now: datetime) -> IssuedCode:
        step = step_of(now)
        return IssuedCode(
            code=self.code_for(step),
            valid_from=step_start(step),
            refresh_after=step_start(step + 1),
            valid_until=step_start(step + ACCEPTED_STEPS),
        )

    def step_scanned(self, scanned: ScannedCode, now: datetime) -> int:
        """The step a scanned code of this secret was made for, when it is still accepted;
        MEMBER_CODE_EXPIRED for a code that was right a little while ago, MEMBER_CODE_UNKNOWN
        for any other."""
        if scanned.handle != self.handle:
            raise MemberCodeUnknown()
        current = step_of(now)
        step = self._matches(scanned, range(current - ACCEPTED_STEPS + 1, current + 1))
        if step is not None:
            return step
        if self._matches(scanned, range(current - RECOGNISED_STEPS + 1, current)) is not None:
            raise MemberCodeExpired()
        raise MemberCodeUnknown()
