"""The identity types (phone, email, WeChat openid, ...) as read last, per process."""

from __future__ import annotations

import time

from loyalty_identity.domain.identities import IdentityType


class IdentityTypeCache:
    """Identity types change rarely and are read on every call: kept for a few seconds per
    process (a change made on another replica is seen within `ttl`)."""

    def __init__(self, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self._types: dict[str, IdentityType] | None = None
        self._expires = 0.0

    def get(self) -> dict[str, IdentityType] | None:
        return self._types if time.monotonic() < self._expires else None

    def put(self, types: dict[str, IdentityType]) -> None:
        self._types, self._expires = types, time.monotonic() + self.ttl

    def invalidate(self) -> None:
        self._types, self._expires = None, 0.0
