"""Scheduled work inside a service: run, wait the interval (or until the service stops), again.
A failing round is logged and retried at the next interval; it never stops the service. A round
the database was unavailable for is a warning (no traceback) and is retried within seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from loyalty_kit import metrics
from loyalty_kit.db import database_unavailable
from loyalty_kit.events import bus_unavailable
from loyalty_kit.logs import get_logger

log = get_logger("loyalty.jobs")
OUTAGE_RETRY_SECONDS = 5.0


async def every(
    seconds: float, stopping: asyncio.Event, work: Callable[[], Awaitable[None]], name: str
) -> None:
    while not stopping.is_set():
        wait = seconds
        try:
            with metrics.job_round(name):
                await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if outage(error):
                wait = min(seconds, OUTAGE_RETRY_SECONDS)
            log_round_failed(log, "scheduled job", error, job=name, after=wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), wait)


def outage(error: BaseException) -> bool:
    """The database, the event bus or a peer service cannot be reached now: worth retrying,
    not a bug."""
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return database_unavailable(error) or bus_unavailable(error)


def log_round_failed(logger: Any, work: str, error: BaseException, **fields: Any) -> None:
    """A failed round of background work (called in its `except`): during an outage one
    warning without a traceback; anything else with its traceback, as the bug it is."""
    if outage(error):
        logger.warning(f"{work}: unavailable; retrying", error=type(error).__name__, **fields)
    else:
        logger.exception(f"{work} failed; retrying", **fields)
