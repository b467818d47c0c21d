"""One async SQLAlchemy engine per service database (asyncpg driver), and what the kit does
when the database is unavailable.

An outage (connection refused or closed, the server shutting down, a connection broken
mid-operation, the pool exhausted past its timeout) is told apart from every other failure by
one classifier, `database_unavailable`: the interceptor answers UNAVAILABLE /
DATABASE_UNAVAILABLE for it, consumers and jobs log a warning and retry. A connection that
failed that way is never given back to the pool: SQLAlchemy discards it (`handle_error`), and
the unit of work invalidates its session for failures of SQL run on the driver connection,
which SQLAlchemy never sees. The unit of work also signals the service's health watcher
(`outage_signal`), so health turns NOT_SERVING on the first failure rather than on its timer.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, Pool

from loyalty_kit.errors import Unavailable


def asyncpg_params(url: URL) -> dict[str, Any]:
    """asyncpg.connect() keyword arguments for a SQLAlchemy URL (TCP or Unix socket)."""
    params: dict[str, Any] = {
        "user": url.username or "postgres",
        "password": url.password or None,
        "database": url.database or "postgres",
    }
    socket_host = url.query.get("host")
    params["host"] = socket_host if isinstance(socket_host, str) else (url.host or "127.0.0.1")
    if url.port:
        params["port"] = url.port
    return params


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(server: URL, database: str) -> bool:
    """Create `database` on the server unless it exists; True when it was created."""
    conn = await asyncpg.connect(**asyncpg_params(server))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if exists:
            return False
        try:
            await conn.execute(f"CREATE DATABASE {quote_ident(database)}")
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            return False  # a replica started at the same moment created it
        return True
    finally:
        await conn.close()


async def drop_database(server: URL, database: str) -> None:
    conn = await asyncpg.connect(**asyncpg_params(server))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
    finally:
        await conn.close()


class CountingPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's async queue pool, counting the check-outs that found every connection in
    use and had to wait for one, the time they waited, and those that gave up (the pool's
    timeout): what the service's metrics report as pool waits."""

    # Its log lines under SQLAlchemy's own name for the pool, as before.
    _sqla_logger_namespace = "sqlalchemy.pool.impl.AsyncAdaptedQueuePool"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits = 0
        self.wait_seconds = 0.0
        self.timeouts = 0

    def _do_get(self) -> ConnectionPoolEntry:
        unbounded = self._max_overflow < 0
        if unbounded or self.checkedin() > 0 or self.overflow() < self._max_overflow:
            return super()._do_get()
        self.waits += 1
        started = time.perf_counter()
        try:
            return super()._do_get()
        except sa_exc.TimeoutError:
            self.timeouts += 1
            raise
        finally:
            self.wait_seconds += time.perf_counter() - started


def create_engine(url: URL, pool_size: int = 10) -> AsyncEngine:
    # Looked up when called, not imported: tracing wraps `create_async_engine` on its module
    # (loyalty_kit.telemetry), and a name imported before would escape it.
    engine = sa_asyncio.create_async_engine(
        url,
        poolclass=CountingPool,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping before every check-out (a round trip per call): connections are recycled
        # instead, and a connection the server dropped is discarded on its first error.
        pool_recycle=1800,
        # Each service owns its schema; a short statement cache avoids stale plans after
        # migrations while keeping asyncpg's prepared-statement speed.
        # No JIT compilation: the services' statements are short, or set-based over estimates
        # that recursive merge chains send sky-high, so PostgreSQL would compile what runs in
        # milliseconds (insights' figures 1-2.5 s a statement, its incremental recomputes
        # 2.3-6.4 s each); insights' staging of 100,000 members took 8 s without it and
        # 10.5-12.7 s with it. (The embedded server is built without JIT.)
        connect_args={"server_settings": {"application_name": "loyalty", "jit": "off"}},
    )
    event.listen(engine.sync_engine, "handle_error", _discard_broken_connection)
    event.listen(engine.sync_engine.pool, "checkout", _refuse_closed_connection)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def database_answers(engine: AsyncEngine, timeout: float = 3.0) -> bool:
    """Whether the database answers `SELECT 1` within `timeout`. Tried twice: a first failure
    on a pooled connection the server has closed discards it, the second try connects anew."""
    for _attempt in range(2):
        try:
            async with asyncio.timeout(timeout):
                async with engine.connect() as conn:
                    await conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            continue
    return False


# -- the database unavailable ------------------------------------------------------------------

# SQLSTATE class 08 (connection exception) and the server going away: admin shutdown,
# crash shutdown, cannot connect now (starting up or shutting down).
SHUTDOWN_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
# asyncpg's words for a connection that is closed, or busy or broken after an interrupted
# operation: unusable, and what the caller sees is the database not answering.
BROKEN_CONNECTION = (
    "connection is closed",
    "connection was closed",
    "another operation is in progress",
    "another operation is cancelling",
    "cannot switch to state",
    "not connected",
)


class DatabaseUnavailable(Unavailable):
    """What a caller is told when the database cannot be used: UNAVAILABLE, retry shortly."""

    reason = "DATABASE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("the database is unavailable; retry shortly")


def database_unavailable(error: BaseException) -> bool:
    """True when `error` means the database cannot be used now (it cannot be reached, a
    connection to it broke, the pool stayed exhausted past its timeout), so the answer is
    UNAVAILABLE (worth retrying), not INTERNAL. Raised through SQLAlchemy or asyncpg alike."""
    for found in _causes(error):
        if isinstance(found, sa_exc.TimeoutError | sa_exc.DisconnectionError):
            return True
        if isinstance(found, sa_exc.DBAPIError) and found.connection_invalidated:
            return True
        code = getattr(found, "sqlstate", None)
        if isinstance(code, str) and (code.startswith("08") or code in SHUTDOWN_SQLSTATES):
            return True
        if isinstance(found, asyncpg.InterfaceError | asyncpg.InternalClientError) and any(
            words in str(found) for words in BROKEN_CONNECTION
        ):
            return True
        # Refused, reset, timed out or a missing socket file: only when raised by the driver
        # or the pool (a file a handler failed to read is not the database).
        if isinstance(found, OSError) and _raised_by_driver(found):
            return True
    return False


def _causes(error: BaseException) -> list[BaseException]:
    """The error, the driver error SQLAlchemy wrapped, and what it was raised from."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending and len(found) < 12:
        current = pending.pop(0)
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        pending.append(getattr(current, "orig", None))
        pending.append(current.__cause__)
        if not current.__suppress_context__:
            pending.append(current.__context__)
    return [e for e in found if isinstance(e, BaseException)]


def _raised_by_driver(error: BaseException) -> bool:
    trace = error.__traceback__
    while trace is not None:
        module = trace.tb_frame.f_globals.get("__name__", "")
        if module.startswith(("asyncpg", "sqlalchemy")):
            return True
        trace = trace.tb_next
    return False


def _discard_broken_connection(context: Any) -> None:
    """SQLAlchemy's `handle_error`: a connection that broke mid-operation in a way asyncpg
    does not call a disconnect (left busy, or in an error state) is discarded too."""
    if not context.is_disconnect and database_unavailable(context.original_exception):
        context.is_disconnect = True


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """The pool's `checkout`: a connection the server closed while it sat in the pool is
    replaced before anyone uses it (no round trip: asyncpg already knows it is closed)."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise sa_exc.DisconnectionError("connection closed while in the pool")


_outages: weakref.WeakKeyDictionary[Pool, asyncio.Event] = weakref.WeakKeyDictionary()


def outage_signal(engine: AsyncEngine) -> asyncio.Event:
    """Set when work on this engine's database failed as unavailable; health waits on it."""
    pool = engine.sync_engine.pool
    signal = _outages.get(pool)
    if signal is None:
        signal = _outages[pool] = asyncio.Event()
    return signal


def report_unavailable(engine: AsyncEngine) -> None:
    outage_signal(engine).set()


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a session, inside the session's transaction.

    Hot paths run their statements on it directly: a statement through SQLAlchemy costs about
    0.7 ms of Python, through asyncpg (with its prepared-statement cache) about 0.2 ms. The
    transaction stays SQLAlchemy's: it is started here if no statement has started it yet, and
    the session commits or rolls it back as usual.
    """
    cached: asyncpg.Connection | None = session.info.get(_DRIVER)
    if cached is not None and session.in_transaction():
        return cached
    connection = await session.connection()
    fairy = await connection.get_raw_connection()
    adapted: Any = fairy.dbapi_connection
    if adapted._transaction is None and adapted.isolation_level != "autocommit":
        await adapted._start_transaction()
    driver: asyncpg.Connection = adapted.driver_connection
    session.info[_DRIVER] = driver
    return driver


_DRIVER = "loyalty.driver_connection"
