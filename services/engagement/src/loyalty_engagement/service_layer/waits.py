"""When a wait step is due, and what the entry waits for: a delay or a window ("wait", due at
a moment), or the next purchase ("purchase", due when the days run out, or at once when the
member buys)."""

from __future__ import annotations

from datetime import datetime, timedelta

from loyalty_engagement.domain import timing
from loyalty_engagement.domain.journeys import Delay, JourneySpec, Step, UntilPurchase, Window

WAIT = "wait"
PURCHASE = "purchase"
QUIET = "quiet"  # a message deferred to the end of quiet hours
ADMIT = "admit"  # entered by a sweep: the timer admits it


def due_of(spec: JourneySpec, step: Step, now: datetime) -> tuple[datetime | None, str]:
    """When the entry goes on past `step` (None: now), and what it waits for."""
    match step:
        case Delay(seconds=seconds):
            return timing.after_delay(now, seconds), WAIT
        case Window(window=window):
            opens = timing.next_open(now, window, spec.time_zone)
            return (None if opens == now else opens), WAIT
        case UntilPurchase(days=days):
            return now + timedelta(days=days), PURCHASE
    raise TypeError(step)
