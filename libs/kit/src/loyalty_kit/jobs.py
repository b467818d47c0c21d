"""Scheduled work inside a service: run, wait the interval (or until the service stops), again.
A failing round is logged and retried at the next interval; it never stops the service. A round
the database was unavailable for is a warning (no traceback) and is retried within seconds.

The same jobs run by hand through the services' Run* admin RPCs, in steps an operator's tool can
show progress of: `chunks_of` reads how big a transaction and how far one call may go."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from loyalty_kit import metrics
from loyalty_kit.db import database_unavailable
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.events import bus_unavailable
from loyalty_kit.logs import get_logger

log = get_logger("loyalty.jobs")
OUTAGE_RETRY_SECONDS = 5.0
DEFAULT_CHUNK_SIZE = 500


@dataclass(frozen=True)
class Chunks:
    """The pace of a chunked job: `size` items (members, grants) per transaction, and at most
    `limit` in all (0: until none is due)."""

    size: int = DEFAULT_CHUNK_SIZE
    limit: int = 0

    def next(self, done: int) -> int:
        """How many to take in the next transaction, `done` taken so far (0: stop here). The
        last transaction is cut to fit the limit."""
        if not self.limit:
            return self.size
        return max(0, min(self.size, self.limit - done))


# What the scheduler runs: the default transactions, until none is due.
UNTIL_DONE = Chunks()


def chunks_of(request: Message, limit_field: str) -> Chunks:
    """A Run* request's `chunk_size` (when it has one; 0: the default) and its limit field
    (`max_members`, `max_grants`; 0: none). Negative values are INVALID_ARGUMENT naming each."""
    size = getattr(request, "chunk_size", 0)
    limit = getattr(request, limit_field)
    violations = [
        FieldViolation(name, "must not be negative")
        for name, value in (("chunk_size", size), (limit_field, limit))
        if value < 0
    ]
    if violations:
        raise InvalidArgument.of(violations)
    return Chunks(size or DEFAULT_CHUNK_SIZE, limit)


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
