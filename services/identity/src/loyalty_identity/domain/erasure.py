"""A member's own request to be erased ("erase me"): pure rules, no I/O.

- A request opens REQUESTED with a confirmation code (6 digits, kept only as its keyed hash,
  bound to the request) valid `CODE_LIFETIME`, and a cooling-off: it is not carried out before
  `erase_after` (the request's time plus the cooling-off).
- The right code confirms it (CONFIRMED); a wrong one counts an attempt and says how many are
  left; the fifth wrong one cancels the request (`code_attempts`), so a new one may be opened.
  An expired code confirms nothing (ERASURE_CODE_EXPIRED): the request is dead, and the next
  RequestErasure replaces it (`code_expired`).
- A request is open while REQUESTED with a live code, or CONFIRMED: a second one is refused
  (ERASURE_ALREADY_REQUESTED) rather than answered, so a second device cannot restart the
  cooling-off nor send codes at will (a retry of the same call is answered by its request id).
- It may be cancelled any time before it runs; it is carried out (DONE) only CONFIRMED and
  once `erase_after` has passed. Any erasure of the member (an operator's too) ends the open
  request as DONE.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from loyalty_kit.errors import AlreadyExists, FailedPrecondition, NotFound

from loyalty_identity.domain.sign_in import MAX_ATTEMPTS

CODE_LIFETIME = timedelta(minutes=15)
DEFAULT_COOLING_OFF = timedelta(hours=168)


class ErasureState(Enum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    DONE = "done"


# Why a request was cancelled.
BY_MEMBER = "member"
BY_OPERATOR = "operator"
CODE_ATTEMPTS = "code_attempts"
CODE_EXPIRED = "code_expired"
MEMBER_MERGED = "member_merged"


def erasure_code_digest(key: bytes, erasure_id: str, code: str) -> bytes:
    """How a confirmation code is kept: HMAC-SHA256 under the service's key, bound to its
    request."""
    return hmac.digest(key, f"erasure-code\x00{erasure_id}\x00{code}".encode(), "sha256")


@dataclass
class ErasureRequest:
    erasure_id: str
    member_id: str
    state: ErasureState
    code_hash: bytes
    requested_at: datetime
    erase_after: datetime
    code_expires_at: datetime
    attempts: int = 0
    last_attempt: str = ""  # the request id of the last code tried (a retry counts once)
    confirmed_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str = ""
    done_at: datetime | None = None

    @classmethod
    def open(
        cls,
        erasure_id: str,
        member_id: str,
        key: bytes,
        code: str,
        now: datetime,
        cooling_off: timedelta,
    ) -> ErasureRequest:
        return cls(
            erasure_id,
            member_id,
            ErasureState.REQUESTED,
            erasure_code_digest(key, erasure_id, code),
            now,
            now + cooling_off,
            now + CODE_LIFETIME,
        )

    @property
    def attempts_left(self) -> int:
        return max(0, MAX_ATTEMPTS - self.attempts)

    def is_open(self, now: datetime) -> bool:
        """Whether it blocks a new request: confirmed, or waiting with a live code."""
        if self.state is ErasureState.CONFIRMED:
            return True
        return self.state is ErasureState.REQUESTED and now < self.code_expires_at

    def replace(self, now: datetime) -> None:
        """A new request takes the place of this dead one (its code expired unconfirmed)."""
        if self.state is ErasureState.REQUESTED:
            self._cancel(CODE_EXPIRED, now)

    def confirm(
        self, key: bytes, code: str, now: datetime, attempt_id: str = ""
    ) -> ErasureRefused | None:
        """Try a code: None when it confirms (or it was confirmed before: a repeat changes
        nothing), else the refusal to answer once this attempt is kept. A retry of the last
        attempt (the same `attempt_id`, the call's request id) counts no second time."""
        if self.state in (ErasureState.CONFIRMED, ErasureState.DONE):
            return None
        if self.state is ErasureState.CANCELLED:
            if self.cancel_reason == CODE_ATTEMPTS:
                return ErasureCodeAttempts()
            return ErasureCancelled()
        if now >= self.code_expires_at:
            return ErasureCodeExpired()
        if hmac.compare_digest(erasure_code_digest(key, self.erasure_id, code), self.code_hash):
            self.attempts += 1
            self.state = ErasureState.CONFIRMED
            self.confirmed_at = now
            return None
        if attempt_id and attempt_id == self.last_attempt:
            return ErasureCodeWrong(self.attempts_left)  # the same wrong attempt, retried
        self.attempts += 1
        self.last_attempt = attempt_id
        if self.attempts_left == 0:
            self._cancel(CODE_ATTEMPTS, now)
            return ErasureCodeAttempts()
        return ErasureCodeWrong(self.attempts_left)

    def cancel(self, reason: str, now: datetime) -> None:
        """Withdraw it before it runs; cancelling a cancelled request changes nothing."""
        if self.state is ErasureState.DONE:
            raise ErasureAlreadyDone()
        if self.state is not ErasureState.CANCELLED:
            self._cancel(reason, now)

    def _cancel(self, reason: str, now: datetime) -> None:
        self.state = ErasureState.CANCELLED
        self.cancelled_at = now
        self.cancel_reason = reason

    def is_due(self, now: datetime) -> bool:
        return self.state is ErasureState.CONFIRMED and now >= self.erase_after

    def ensure_due(self, now: datetime) -> None:
        """Carried out only confirmed and past the cooling-off, and once (two sweeps at once:
        the second finds it done)."""
        if self.state is ErasureState.DONE:
            raise ErasureAlreadyDone()
        if self.state is ErasureState.REQUESTED:
            raise ErasureNotConfirmed()
        if self.state is ErasureState.CANCELLED:
            raise ErasureCancelled()
        if self.state is ErasureState.CONFIRMED and now < self.erase_after:
            raise ErasureCoolingOff(self.erase_after)

    def done(self, now: datetime) -> None:
        """The member was erased (by this request or otherwise): an open request ends DONE."""
        if self.state in (ErasureState.REQUESTED, ErasureState.CONFIRMED):
            self.state = ErasureState.DONE
            self.done_at = now


# --- refusals ---------------------------------------------------------------------------------
class ErasureRefused(FailedPrecondition):
    """A step of an erasure request that cannot be taken: each case its own reason."""


class ErasureCodeWrong(ErasureRefused):
    reason = "ERASURE_CODE_WRONG"

    def __init__(self, attempts_left: int) -> None:
        super().__init__(
            f"the code is wrong: {attempts_left} attempts left",
            metadata={"attempts_left": str(attempts_left)},
        )
        self.attempts_left = attempts_left


class ErasureCodeExpired(ErasureRefused):
    reason = "ERASURE_CODE_EXPIRED"

    def __init__(self) -> None:
        super().__init__("the code has expired: request the erasure again for a new one")


class ErasureCodeAttempts(ErasureRefused):
    reason = "ERASURE_CODE_ATTEMPTS"

    def __init__(self) -> None:
        super().__init__(
            "too many wrong codes: the request is cancelled, request the erasure again"
        )


class ErasureCancelled(ErasureRefused):
    reason = "ERASURE_CANCELLED"

    def __init__(self) -> None:
        super().__init__("the erasure request was cancelled: request the erasure again")


class ErasureNotConfirmed(ErasureRefused):
    reason = "ERASURE_NOT_CONFIRMED"

    def __init__(self) -> None:
        super().__init__("the erasure request is not confirmed: confirm it with the code sent")


class ErasureCoolingOff(ErasureRefused):
    reason = "ERASURE_COOLING_OFF"

    def __init__(self, erase_after: datetime) -> None:
        super().__init__(
            f"the erasure waits for its cooling-off until {erase_after.isoformat()}",
            metadata={"erase_after": erase_after.isoformat()},
        )


class ErasureAlreadyDone(ErasureRefused):
    reason = "ERASURE_DONE"

    def __init__(self) -> None:
        super().__init__("the erasure was carried out already")


class ErasureAlreadyRequested(AlreadyExists):
    reason = "ERASURE_ALREADY_REQUESTED"

    def __init__(self, request: ErasureRequest) -> None:
        super().__init__(
            "an erasure request is open already: confirm or cancel it",
            metadata={"state": request.state.value, "erase_after": request.erase_after.isoformat()},
        )


class ErasureRequestNotFound(NotFound):
    reason = "ERASURE_REQUEST_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("the member has no erasure request")


class NoPhoneToConfirm(FailedPrecondition):
    reason = "ERASURE_NO_PHONE"

    def __init__(self) -> None:
        super().__init__(
            "the member has no phone to send the confirmation code to: an operator erases "
            "such members (EraseMember)"
        )
