"""Scheduled work inside a service: run, wait the interval (or until the service stops), again.
A failing round is logged and retried at the next interval; it never stops the service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from loyalty_kit.logs import get_logger

log = get_logger("loyalty.jobs")


async def every(
    seconds: float, stopping: asyncio.Event, work: Callable[[], Awaitable[None]], name: str
) -> None:
    while not stopping.is_set():
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("scheduled job failed; retrying next interval", job=name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)
