"""One lifetime value fit at a time across replicas: a PostgreSQL advisory lock held on a
connection of its own for as long as the fitter works (a session lock: the fit's own
transactions come and go beside it), released when it ends or when the connection drops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

FIT_LOCK = 0x1C1F_F17  # the fitter's
SCHEDULE_LOCK = 0x1C1F_5C4  # asking for a scheduled fit: one replica does


@asynccontextmanager
async def held(engine: AsyncEngine, key: int) -> AsyncIterator[bool]:
    """Whether this replica took the lock (False: another holds it); held inside the block."""
    async with engine.connect() as conn:
        taken = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
        await conn.commit()  # idle, not idle in a transaction, while the lock is held
        try:
            yield taken
        finally:
            if taken:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()
