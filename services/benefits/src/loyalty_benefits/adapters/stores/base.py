"""What every store of the benefits service shares: the asyncpg connection of the unit of
work's transaction, and the member ID that erased members' rows are kept under."""

from __future__ import annotations

import asyncpg
from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession


class Store:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def conn(self) -> asyncpg.Connection:
        return await driver_connection(self.session)


# Rows of erased members keep their counts under this member ID (none of them is a person).
ANONYMOUS_MEMBER = "00000000-0000-0000-0000-000000000000"
