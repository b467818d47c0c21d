"""Scheduled work inside a service: run, wait the interval (or until the service stops), again.
A failing round is logged and retried at the next interval; it never stops the service. A round
the database was unavailable for is a warning (no traceback) and is retried within seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from loyalty_kit.db import database_unavailable
from loyalty_kit.logs import get_logger

log = get_logger("loyalty.jobs")
OUTAGE_RETRY_SECONDS = 5.0


async def every(
    seconds: float, stopping: asyncio.Event, work: Callable[[], Awaitable[None]], name: str
) -> None:
    while not stopping.is_set():
        wait = seconds
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if database_unavailable(error):
                wait = min(seconds, OUTAGE_RETRY_SECONDS)
                log.warning("scheduled job: database unavailable; retrying", job=name, after=wait)
            else:
                log.exception("scheduled job failed; retrying next interval", job=name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), wait)
