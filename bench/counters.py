"""Counting what a service does on its engine during a measurement.

`EngineCounter` counts the statements SQLAlchemy issues and the pool's check-outs; statements a
hot path runs straight on the asyncpg driver connection (loyalty_kit.db.driver_connection) are
not seen there. `DriverCounter` sees both: it counts on the asyncpg connections themselves.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

# Statements of a service's own background work on its engine: the outbox relay's (lock, read,
# mark) and the health probe's.
RELAY_STATEMENTS = (
    "SELECT pg_try_advisory_xact_lock",
    "SELECT seq, event_id",
    "UPDATE kit_outbox SET",
)
HEALTH_STATEMENT = "SELECT 1"


class EngineCounter:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.statements = 0
        self.checkouts = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        event.listen(engine.sync_engine.pool, "checkout", self._checkout)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements += 1

    def _checkout(self, *_args: Any) -> None:
        self.checkouts += 1

    def remove(self) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._statement)
        event.remove(self.engine.sync_engine.pool, "checkout", self._checkout)


class DriverCounter(EngineCounter):
    """Every statement on the engine, by text: SQLAlchemy's (seen as EngineCounter sees them;
    its asyncpg adapter runs them as prepared statements, which asyncpg does not log) and those
    run straight on the driver connection, BEGIN and COMMIT included (asyncpg's query logger,
    added to each connection checked out after the counter started, removed by `remove`;
    it reports on the next turns of the event loop). SQLAlchemy `executemany` would count twice.
    """

    def __init__(self, engine: AsyncEngine, *, watch: str | None = None) -> None:
        self.by_text: Counter[str] = Counter()
        self.seconds_by_text: Counter[str] = Counter()  # time asyncpg took (logged ones only)
        self.watch = watch  # statements containing it: each one's time kept in order, `watched`
        self.watched: list[float] = []
        self._logged: dict[int, Any] = {}  # asyncpg connections with our logger
        super().__init__(engine)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements += 1
        self.by_text[" ".join(statement.split())] += 1

    def _checkout(self, dbapi_connection: Any, *_args: Any) -> None:
        self.checkouts += 1
        driver = dbapi_connection.driver_connection
        if id(driver) not in self._logged:
            driver.add_query_logger(self._log)
            self._logged[id(driver)] = driver

    def _log(self, record: Any) -> None:
        self.statements += 1
        text = " ".join(record.query.split())
        self.by_text[text] += 1
        self.seconds_by_text[text] += record.elapsed
        if self.watch is not None and self.watch in text:
            self.watched.append(record.elapsed)

    def seconds(self, *, excluding: tuple[str, ...] = ()) -> float:
        """Time the driver-run statements took (sent to answered), less `excluding`."""
        return sum(t for q, t in self.seconds_by_text.items() if not q.startswith(excluding))

    def count(self, *, excluding: tuple[str, ...] = ()) -> int:
        """Statements counted, less those starting with any of `excluding`."""
        return sum(n for q, n in self.by_text.items() if not q.startswith(excluding))

    def top(self, n: int, *, excluding: tuple[str, ...] = (), width: int = 60) -> dict[str, int]:
        """The `n` most frequent statements (their first `width` characters) and their counts."""
        found: Counter[str] = Counter()
        for q, count in self.by_text.items():
            if not q.startswith(excluding):
                found[q[:width]] += count
        return dict(found.most_common(n))

    def remove(self) -> None:
        super().remove()
        for driver in self._logged.values():
            driver.remove_query_logger(self._log)
        self._logged.clear()


class RpcCounter(logging.Handler):
    """The calls the in-process services serve, by method, from the kit's access log (one
    `rpc` record per call on the `loyalty.rpc` logger, with its server-side `ms`), while
    attached. The logger is let through at INFO meanwhile, whatever --log-level says."""

    LOGGER = "loyalty.rpc"

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.calls: Counter[str] = Counter()
        self.ms: defaultdict[str, list[float]] = defaultdict(list)
        self._logger = logging.getLogger(self.LOGGER)
        self._level = self._logger.level
        if not self._logger.isEnabledFor(logging.INFO):
            self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        event = record.msg  # structlog's event dict, before the formatter renders it
        if isinstance(event, dict) and event.get("event") == "rpc":
            method = str(event.get("method", "?")).rsplit(".", 1)[-1]  # Service/Method
            self.calls[method] += 1
            self.ms[method].append(float(event.get("ms", 0.0)))

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def remove(self) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


async def round_trips(
    engine: AsyncEngine, once: Callable[[], Awaitable[Any]], calls: int, top: int
) -> dict[str, Any]:
    """`calls` calls of `once`, one after the other, counted: statements and connection
    checkouts per call, and the `top` statements by count (a scenario's `extra`)."""
    counter = DriverCounter(engine)
    try:
        for _ in range(calls):
            await once()
    finally:
        counter.remove()
    return {
        "statements_per_call": round(counter.statements / calls, 2),
        "checkouts_per_call": round(counter.checkouts / calls, 2),
        "statements": counter.top(top),
    }
