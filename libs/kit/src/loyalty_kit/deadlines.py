"""Deadline propagation: every outbound call gets a deadline derived from the caller's.

The server interceptor records when the inbound call must finish; client interceptors give
each outbound call what remains of it (less a small margin), capped, or a default deadline when
there is no inbound call (a background job or a consumer).
"""

from __future__ import annotations

import time
from contextvars import ContextVar

_inbound_deadline: ContextVar[float | None] = ContextVar("inbound_deadline", default=None)

# Keep a little time to answer the caller after the outbound call gives up.
MARGIN_SECONDS = 0.05


def set_inbound_deadline(time_remaining: float | None) -> None:
    _inbound_deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)


def outbound_timeout(default: float, cap: float) -> float:
    deadline = _inbound_deadline.get()
    if deadline is None:
        return min(default, cap)
    remaining = deadline - time.monotonic() - MARGIN_SECONDS
    return max(0.001, min(remaining, cap))
