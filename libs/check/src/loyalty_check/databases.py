"""Read-only snapshots of the services' databases.

The checker reads each service's database with the services' own settings
(`LOYALTY_DATABASE_URL`, `LOYALTY_DATABASE_PREFIX`: `<prefix><service>`), every query in a
`REPEATABLE READ, READ ONLY` transaction: one consistent snapshot per query, and no way to
write. Services never read each other's tables; the checker is an auditor outside them, which
is why it may read all of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
from loyalty_kit.db import asyncpg_params
from loyalty_kit.settings import Settings

SERVICES = ("identity", "points", "tiers", "benefits", "insights", "engagement", "gateway")
# Rows fetched per round trip when a query's answer is streamed (the cross-database merges).
PREFETCH = 20_000


class CannotRun(RuntimeError):
    """The check could not run (a database or a service could not be reached): exit 2."""


class Databases:
    def __init__(self, settings: Settings) -> None:
        if not settings.database_url:
            raise CannotRun(
                "LOYALTY_DATABASE_URL is not set: `. .loyalty/env` while `make run` is up, or "
                "point it at the PostgreSQL server of the services"
            )
        self.settings = settings

    def name_of(self, service: str) -> str:
        return f"{self.settings.database_prefix}{service}"

    @contextlib.asynccontextmanager
    async def snapshot(self, service: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection to `service`'s database inside a read-only repeatable-read
        transaction; CannotRun when the database cannot be reached."""
        params = asyncpg_params(self.settings.server_url.set(database=self.name_of(service)))
        try:
            conn = await asyncpg.connect(
                **params,
                timeout=10,
                server_settings={"application_name": "loyalty-check"},
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            raise CannotRun(
                f"cannot read the {service} database ({self.name_of(service)}): "
                f"{type(error).__name__}: {error}"
            ) from error
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                yield conn
        except (OSError, asyncpg.exceptions.ConnectionDoesNotExistError) as error:
            raise CannotRun(f"lost the {service} database: {error}") from error
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
