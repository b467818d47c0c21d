"""Keeping a member's access token fresh, and remembering sessions signed out.

A refresh token is used once (identity rotates it, and a second use ends the whole session:
REFRESH_TOKEN_REUSED). A page and its htmx polls may ask at the same moment with the same
cookie, so the `Refresher` refreshes a token once: the others wait for that refresh and get its
answer, which it keeps a minute for requests still carrying the old cookie.

A member's access token is good until it runs out (at most 10 minutes), even after sign-out.
`SignedOut` notes the session in the gateway's shared store (the rate limits', memory or Redis)
until its refresh token would have run out: a cookie of a signed-out session opens nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from limits.aio.storage import Storage

from loyalty_gateway.me.cookie import Tokens

MARGIN_SECONDS = 30  # refreshed when the access token has less than this left
KEEP_SECONDS = 60  # a refresh's answer, for requests with the old cookie


class SessionEnded(Exception):
    """The member's session is over (signed out, revoked, expired): sign in again."""


def _digest(refresh: str) -> str:
    return hashlib.sha256(refresh.encode()).hexdigest()


class Refresher:
    def __init__(
        self,
        refresh: Callable[[str], Awaitable[Tokens]],
        clock: Callable[[], datetime],
        margin_seconds: float = MARGIN_SECONDS,
        keep_seconds: float = KEEP_SECONDS,
    ) -> None:
        self._refresh = refresh
        self._clock = clock
        self._margin = margin_seconds
        self._keep = keep_seconds
        self._locks: dict[str, asyncio.Lock] = {}
        self._done: dict[str, tuple[Tokens, float]] = {}

    async def current(self, tokens: Tokens) -> Tokens:
        """Tokens whose access token is good for a while: these, or refreshed ones."""
        now = self._clock().timestamp()
        if tokens.access_expires - now > self._margin:
            return tokens
        if tokens.refresh_expires <= now:
            raise SessionEnded()
        key = _digest(tokens.refresh)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            done = self._done.get(key)
            if done is not None and done[1] > now - self._keep:
                return done[0]
            fresh = await self._refresh(tokens.refresh)  # SessionEnded when refused
            self._done[key] = (fresh, now)
        self._forget(now)
        return fresh

    def _forget(self, now: float) -> None:
        for key, (_tokens, when) in list(self._done.items()):
            if when <= now - self._keep:
                del self._done[key]
                lock = self._locks.get(key)
                if lock is not None and not lock.locked():
                    del self._locks[key]


class SignedOut:
    """Member sessions signed out at this page, in the gateway's shared store."""

    PREFIX = "me-signed-out"

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def add(self, session: str, seconds: float) -> None:
        await self._storage.incr(f"{self.PREFIX}/{session}", max(1.0, seconds))

    async def has(self, session: str) -> bool:
        try:
            count: int = await self._storage.get(f"{self.PREFIX}/{session}")
            return count > 0
        except Exception:  # the shared store is down: the access token's own expiry holds
            return False
