"""The clock: every service reads the time through one `Clock`, so tests can hand in their own
(a composition root carries it; nothing else calls `datetime.now`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock: now, in UTC."""
    return datetime.now(UTC)
