"""Unit of work: one transaction, its session, its outbox and its idempotency keys.

Service layers open one per command (`async with uow_factory() as uow:`), do their work through
repositories built on `uow.session`, add events to `uow.outbox`, and `await uow.commit()`.
Leaving the block without committing rolls back. Services subclass it to add repositories.

Leaving it on a failure of the database (see `db.database_unavailable`), or cancelled (a
deadline) perhaps in the middle of a statement, discards the connection instead: SQL run on the
driver connection fails where SQLAlchemy cannot see it, and a connection in an unknown state
must not serve the next unit of work. An outage also wakes the service's health watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Protocol, Self

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_kit import audit, db
from loyalty_kit.idempotency import IdempotencyKeys
from loyalty_kit.outbox import Outbox


class Transaction(Protocol):
    """What every service's use cases see of a unit of work, whatever its stores: a block that
    rolls back unless committed. Each service's port adds its stores (`service_layer/ports.py`);
    `UnitOfWork` below and the fast tests' fakes implement it."""

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def commit(self) -> None: ...


class UnitOfWork:
    # Services whose requests carry personal data set a key: request fingerprints are then
    # keyed hashes (see idempotency.fingerprint).
    fingerprint_key: bytes | None = None

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], namespace: str, *, read_only: bool = False
    ) -> None:
        self._sessions = sessions
        self.namespace = namespace
        # Reads (and lone statements, atomic by themselves) run in autocommit: no BEGIN and
        # ROLLBACK or COMMIT round trips around a single statement.
        self.read_only = read_only

    async def __aenter__(self) -> Self:
        engine: AsyncEngine = self._sessions.kw["bind"]
        self._engine = engine
        if self.read_only:
            bind = engine.execution_options(isolation_level="AUTOCOMMIT")
            self.session = self._sessions(bind=bind)
        else:
            self.session = self._sessions()
            await self.session.begin()
        self.outbox = Outbox(self.session, self.namespace)
        self.idempotency = IdempotencyKeys(self.session, self.fingerprint_key)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if isinstance(exc, asyncio.CancelledError):
                await self._discard_connection()
            elif exc is not None and db.database_unavailable(exc):
                db.report_unavailable(self._engine)
                await self._discard_connection()
            elif self.session.in_transaction():
                await self.session.rollback()
        finally:
            await self.session.close()

    async def _discard_connection(self) -> None:
        with contextlib.suppress(Exception):  # the failure that brought us here is what counts
            await self.session.invalidate()

    async def write_events(self) -> None:
        """The events the work raised so far written to the outbox now, carrying the context at
        hand (its request id and trace). `commit` calls it first, and a consumer's batch after
        each event in that event's own span, so a batch's events each continue their own trace.
        The services' units of work that collect their aggregates' events override it."""

    async def commit(self) -> None:
        await self.write_events()
        # An audited call's entry goes in with its change: it exists exactly when that does.
        draft = None if self.read_only else audit.pending()
        if draft is not None:
            await self.outbox.add(audit.entry(draft, "OK"), event_id=draft.entry_id)
        await self.session.commit()
        if draft is not None:
            draft.written = True

    async def rollback(self) -> None:
        await self.session.rollback()
