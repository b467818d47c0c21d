"""Hot paths run SQL on the asyncpg connection under a unit of work: it must be the unit of
work's transaction (this guards the kit's use of SQLAlchemy's asyncpg adapter internals)."""

from __future__ import annotations

import pytest
from loyalty_kit import db
from loyalty_kit.uow import UnitOfWork
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def rows(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [r[0] for r in await conn.execute(text("SELECT note FROM notes ORDER BY note"))]


async def test_driver_statements_belong_to_the_unit_of_work(kit_db: AsyncEngine) -> None:
    async with kit_db.begin() as conn:
        await conn.execute(text("CREATE TABLE notes (note text)"))
    sessions = db.session_factory(kit_db)

    async with UnitOfWork(sessions, "loyalty") as uow:
        driver = await db.driver_connection(uow.session)
        assert driver.is_in_transaction()
        await driver.execute("INSERT INTO notes VALUES ('rolled back')")
        # leaving without commit rolls back, the driver's statement too
    assert await rows(kit_db) == []

    async with UnitOfWork(sessions, "loyalty") as uow:
        await uow.session.execute(text("INSERT INTO notes VALUES ('through the session')"))
        driver = await db.driver_connection(uow.session)
        assert await driver.fetchval("SELECT count(*) FROM notes") == 1  # same transaction
        await driver.execute("INSERT INTO notes VALUES ('through the driver')")
        await uow.commit()
    assert await rows(kit_db) == ["through the driver", "through the session"]

    async with UnitOfWork(sessions, "loyalty", read_only=True) as uow:
        driver = await db.driver_connection(uow.session)
        assert not driver.is_in_transaction()  # reads run in autocommit
        assert await driver.fetchval("SELECT count(*) FROM notes") == 2


async def test_the_services_connections_compile_no_statement(kit_db: AsyncEngine) -> None:
    """JIT is off on every connection the kit opens (a compilation costs seconds on statements
    whose estimates run wild and that run in milliseconds)."""
    async with kit_db.connect() as conn:
        assert (await conn.execute(text("SHOW jit"))).scalar_one() == "off"
