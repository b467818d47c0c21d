"""Unit of work: one transaction, its session, its outbox and its idempotency keys.

Service layers open one per command (`async with uow_factory() as uow:`), do their work through
repositories built on `uow.session`, add events to `uow.outbox`, and `await uow.commit()`.
Leaving the block without committing rolls back. Services subclass it to add repositories.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_kit.idempotency import IdempotencyKeys
from loyalty_kit.outbox import Outbox


class UnitOfWork:
    # Services whose requests carry personal data set a key: request fingerprints are then
    # keyed hashes (see idempotency.fingerprint).
    fingerprint_key: bytes | None = None

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], namespace: str, *, read_only: bool = False
    ) -> None:
        self._sessions = sessions
        self.namespace = namespace
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a single statement.
        self.read_only = read_only

    async def __aenter__(self) -> Self:
        if self.read_only:
            bind = self._sessions.kw["bind"].execution_options(isolation_level="AUTOCOMMIT")
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
            if self.session.in_transaction():
                await self.session.rollback()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()
