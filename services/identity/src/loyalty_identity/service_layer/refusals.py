"""Refusals of members signing in and of member codes, counted in the service's metrics by
reason: wrong, expired and used codes, exhausted challenges, limits reached, refresh tokens
reused after rotation, and so on.

The label is the refusal's reason (the ErrorInfo reason the caller reads), split by the limit
for the rate limits; the values come from the fixed sets below, never from a request (no phone,
member, code or client in a label). Anything else raised (a bad field, a dependency down) is
no refusal of these and is not counted here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from loyalty_kit import metrics
from loyalty_kit.errors import DomainError


@dataclass(frozen=True)
class Refusals:
    metric: str
    text: str
    reasons: frozenset[str]
    # A reason whose metadata `limit` says which limit refused: counted as `<reason>_<LIMIT>`.
    limited: frozenset[str] = frozenset()

    def label(self, error: DomainError) -> str | None:
        reason = error.reason
        if reason in self.limited:
            reason = f"{reason}_{error.metadata.get('limit', '').upper()}"
        return reason if reason in self.reasons else None


SIGN_IN = Refusals(
    "loyalty_member_sign_in_refusals",
    "Members' sign-ins and token refreshes refused, by reason (a wrong, expired or used code, "
    "a challenge out of attempts, a limit per phone or per client address, a refresh token "
    "reused after rotation, ...).",
    frozenset(
        {
            "CODE_WRONG",
            "CODE_EXPIRED",
            "CODE_USED",
            "CODE_EXHAUSTED",
            "CHALLENGE_NOT_FOUND",
            "SIGN_IN_RATE_LIMITED_PHONE",
            "SIGN_IN_RATE_LIMITED_CLIENT_ADDRESS",
            "REFRESH_TOKEN_INVALID",
            "REFRESH_TOKEN_REVOKED",
            "REFRESH_TOKEN_REUSED",
            "REFRESH_TOKEN_EXPIRED",
            "WECHAT_CODE_REFUSED",
            "MEMBER_SUSPENDED",
        }
    ),
    limited=frozenset({"SIGN_IN_RATE_LIMITED"}),
)

MEMBER_CODE = Refusals(
    "loyalty_member_code_refusals",
    "Member codes refused at a till, by reason (malformed, used or replayed, expired, unknown, "
    "locked after too many wrong codes for the handle or from the client).",
    frozenset(
        {
            "MEMBER_CODE_MALFORMED",
            "MEMBER_CODE_USED",
            "MEMBER_CODE_EXPIRED",
            "MEMBER_CODE_UNKNOWN",
            "MEMBER_CODE_LOCKED_HANDLE",
            "MEMBER_CODE_LOCKED_CLIENT",
        }
    ),
    limited=frozenset({"MEMBER_CODE_LOCKED"}),
)


@contextmanager
def counting(refusals: Refusals) -> Iterator[None]:
    """Count a refusal of `refusals` raised inside (and raise it on)."""
    try:
        yield
    except DomainError as error:
        label = refusals.label(error)
        if label is not None:
            metrics.add(refusals.metric, refusals.text, {"reason": label})
        raise
