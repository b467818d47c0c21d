"""The webhook channel's rules, without I/O: the signature a receiver checks, the backoff
between attempts, which answers are worth another attempt, and unsubscribe tokens.

Signature: the header `X-Loyalty-Signature: t=<unix seconds>,v1=<hex>` where `<hex>` is
HMAC-SHA256 under the endpoint's secret of `<t>.<the request body's bytes>`. A receiver
recomputes it over the raw body, compares in constant time, and refuses a `t` more than five
minutes from its own clock (a replayed request); `X-Loyalty-Message-Id` names the message, the
same on every attempt, for the receiver to drop a repeat."""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Loyalty-Signature"
MESSAGE_ID_HEADER = "X-Loyalty-Message-Id"
ATTEMPT_HEADER = "X-Loyalty-Delivery-Attempt"
TOLERANCE_SECONDS = 300
MIN_SECRET_CHARS = 16


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header's value for a request sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: int) -> bool:
    """What a receiver does: the signature matches and its time is within the tolerance."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = signature(secret, timestamp, body)
    return hmac.compare_digest(expected, f"t={timestamp},v1={fields.get('v1', '')}")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: before attempt n+1, a random wait in
    [base * 2^(n-1) / 2, base * 2^(n-1)], capped."""

    base_seconds: float
    cap_seconds: float

    def after(self, attempts: int, draw: float | None = None) -> timedelta:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        share = random.random() if draw is None else draw
        return timedelta(seconds=ceiling * (0.5 + share / 2))


def retryable(status: int | None) -> bool:
    """None: no answer (a timeout, a refused connection). 5xx, 408 and 429 are passing
    troubles; any other 4xx is the receiver refusing this message for good."""
    return status is None or status >= 500 or status in (408, 429)


def url_problem(url: str) -> str:
    """Why `url` cannot be an endpoint ("" when it can): https, or http to this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "an http(s) URL"
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        return "https (http only to localhost)"
    return ""


def new_token() -> str:
    """An unsubscribe token: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    """How a token is stored and looked up (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()
