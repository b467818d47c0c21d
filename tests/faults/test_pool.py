"""The kit's side of an outage, on one engine reaching PostgreSQL through a proxy: which
failures count as the database unavailable, that a connection broken under SQL run on the
driver connection is never handed out again, and that a composite flow's answer is given
even when it cannot be kept."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
import pytest_asyncio
from google.protobuf import wrappers_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_devstack.embedded import Infrastructure
from loyalty_devstack.proxy import DatabaseProxy
from loyalty_kit import db, jobs, migrations
from loyalty_kit.idempotency import run_remembered
from loyalty_kit.jobs import every
from loyalty_kit.settings import Settings
from loyalty_kit.uow import UnitOfWork
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

pytestmark = pytest.mark.asyncio(loop_scope="session")

KIT_MIGRATIONS = "loyalty_points:migrations"  # its first revision is the kit's tables


@pytest_asyncio.fixture(loop_scope="session")
async def proxied(
    make_settings: Callable[..., Settings], infra: Infrastructure, run_id: str
) -> AsyncIterator[tuple[AsyncEngine, DatabaseProxy]]:
    """An engine of one pooled connection (plus one overflow) on a database with the kit's
    tables, through a proxy."""
    direct = make_settings(database_prefix=f"{run_id}_f_")
    await db.ensure_database(direct.server_url, direct.database_for("kit"))
    setup = db.create_engine(direct.service_database_url("kit"), pool_size=1)
    await migrations.upgrade(setup, KIT_MIGRATIONS)
    await setup.dispose()
    proxy = await DatabaseProxy(infra.database_url).start()
    through = direct.model_copy(update={"database_url": proxy.url(infra.database_url)})
    engine = db.create_engine(through.service_database_url("kit"), pool_size=1)
    try:
        yield engine, proxy
    finally:
        await proxy.restore()
        await engine.dispose()
        await proxy.close()


async def selects_one(engine: AsyncEngine, *, read_only: bool = False) -> int:
    async with UnitOfWork(db.session_factory(engine), "faults", read_only=read_only) as uow:
        driver = await db.driver_connection(uow.session)
        return int(await driver.fetchval("SELECT 1"))


async def test_an_outage_is_told_apart_from_other_failures(
    proxied: tuple[AsyncEngine, DatabaseProxy],
) -> None:
    engine, proxy = proxied
    await proxy.cut()
    with pytest.raises(Exception) as refused:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    await proxy.restore()
    assert db.database_unavailable(refused.value), repr(refused.value)

    tight = create_async_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        async with tight.connect() as held:
            await held.exec_driver_sql("SELECT 1")
            with pytest.raises(sa_exc.TimeoutError) as exhausted:
                async with tight.connect():
                    pass
    finally:
        await tight.dispose()
    assert db.database_unavailable(exhausted.value)

    async with engine.connect() as conn:
        with pytest.raises(sa_exc.DBAPIError) as bad_input:
            await conn.exec_driver_sql("SELECT 'x'::int")
    assert not db.database_unavailable(bad_input.value)
    async with UnitOfWork(db.session_factory(engine), "faults") as uow:
        driver = await db.driver_connection(uow.session)
        with pytest.raises(asyncpg.PostgresError) as division:
            await driver.fetchval("SELECT 1 / 0")
    assert not db.database_unavailable(division.value)
    with pytest.raises(OSError) as elsewhere:
        raise ConnectionRefusedError("not the database: raised outside the driver")
    assert not db.database_unavailable(elsewhere.value)
    assert await selects_one(engine) == 1


async def test_a_connection_that_broke_under_the_driver_is_not_handed_out_again(
    proxied: tuple[AsyncEngine, DatabaseProxy],
) -> None:
    engine, proxy = proxied
    with pytest.raises(Exception) as broken:
        async with UnitOfWork(db.session_factory(engine), "faults") as uow:
            driver = await db.driver_connection(uow.session)
            await proxy.cut()  # the pooled connection closes under the unit of work
            await proxy.restore()
            await driver.fetchval("SELECT 1")
    assert db.database_unavailable(broken.value), repr(broken.value)
    for read_only in (False, True, False):
        assert await selects_one(engine, read_only=read_only) == 1


async def test_a_pooled_connection_the_server_terminated_is_replaced(
    proxied: tuple[AsyncEngine, DatabaseProxy], infra: Infrastructure
) -> None:
    """The server's goodbye reaches an idle pooled connection just before its closing does:
    the next statement on it fails ("cannot switch to state ...; another operation is in
    progress"), as unavailable, and the connection goes; the one after that succeeds."""
    engine, _proxy = proxied
    url = make_url(infra.database_url).set(drivername="postgresql+asyncpg")
    admin = await asyncpg.connect(**db.asyncpg_params(url))
    try:
        for _ in range(10):
            async with UnitOfWork(db.session_factory(engine), "faults", read_only=True) as uow:
                driver = await db.driver_connection(uow.session)
                pid = await driver.fetchval("SELECT pg_backend_pid()")
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            try:
                await selects_one(engine, read_only=True)
            except Exception as error:
                assert db.database_unavailable(error), repr(error)
            assert await selects_one(engine) == 1
    finally:
        await admin.close()


async def test_a_flow_whose_answer_cannot_be_kept_is_still_answered(
    proxied: tuple[AsyncEngine, DatabaseProxy],
) -> None:
    engine, proxy = proxied
    sessions = db.session_factory(engine)
    runs: list[str] = []

    async def flow(cut_while_running: bool) -> wrappers_pb2.StringValue:
        async def work() -> wrappers_pb2.StringValue:
            runs.append("ran")
            if cut_while_running:
                await proxy.cut()  # the services answered; now the answer cannot be kept
            return wrappers_pb2.StringValue(value=f"answer {len(runs)}")

        return await run_remembered(
            lambda: UnitOfWork(sessions, "faults"),
            "loyalty.test.v1.Flow/Run:client",
            points_pb.RedeemPointsRequest(request_id="kept-later", points=5),
            wrappers_pb2.StringValue,
            work,
        )

    try:
        assert (await flow(cut_while_running=True)).value == "answer 1"
    finally:
        await proxy.restore()
    # Not kept: a retry runs the flow again (the services beneath take it once) and keeps it.
    assert (await flow(cut_while_running=False)).value == "answer 2"
    assert (await flow(cut_while_running=False)).value == "answer 2"
    assert runs == ["ran", "ran"]


async def test_a_scheduled_job_that_meets_an_outage_warns_and_retries_within_seconds(
    proxied: tuple[AsyncEngine, DatabaseProxy],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An hourly job is not put off for an hour by an outage, nor logs a traceback."""
    engine, proxy = proxied
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(jobs, "OUTAGE_RETRY_SECONDS", 0.5)
    stopping = asyncio.Event()
    rounds: list[int] = []

    async def work() -> None:
        rounds.append(await selects_one(engine))
        stopping.set()

    await proxy.cut()
    job = asyncio.create_task(every(3600, stopping, work, "faults-hourly"))
    await asyncio.sleep(0.5)
    await proxy.restore()
    await asyncio.wait_for(job, timeout=15)
    assert rounds == [1]
    assert [r.levelno for r in caplog.records if r.name == "loyalty.jobs"] == [logging.WARNING]
