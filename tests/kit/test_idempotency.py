"""request_id idempotency: a retry returns the first answer and writes nothing new."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from google.protobuf import wrappers_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_kit import db
from loyalty_kit.errors import InvalidArgument
from loyalty_kit.idempotency import run_remembered
from loyalty_kit.uow import UnitOfWork
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCOPE = "loyalty.test.v1.CounterService/Add"


async def add(engine: AsyncEngine, request_id: str, amount: int) -> wrappers_pb2.Int64Value:
    """A mutating command written the way services write them."""
    request = wrappers_pb2.Int64Value(value=amount)
    async with UnitOfWork(db.session_factory(engine), "loyalty") as uow:
        first = await uow.idempotency.claim(SCOPE, request_id, request, wrappers_pb2.Int64Value)
        if first is not None:
            return first
        total = await uow.session.scalar(
            text("UPDATE counter SET total = total + :a RETURNING total"), {"a": amount}
        )
        await asyncio.sleep(0.01)  # widen the window for races
        response = wrappers_pb2.Int64Value(value=total)
        await uow.idempotency.store(SCOPE, request_id, response)
        await uow.commit()
        return response


async def counter(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT total FROM counter")))


@pytest.fixture
async def with_counter(kit_db: AsyncEngine) -> AsyncEngine:
    async with kit_db.begin() as conn:
        await conn.execute(text("CREATE TABLE counter (total bigint NOT NULL)"))
        await conn.execute(text("INSERT INTO counter VALUES (0)"))
    return kit_db


async def test_retry_returns_the_first_answer(with_counter: AsyncEngine) -> None:
    first = await add(with_counter, "req-1", 5)
    await add(with_counter, "req-2", 1)
    retry = await add(with_counter, "req-1", 5)
    assert first.value == retry.value == 5
    assert await counter(with_counter) == 6


async def test_concurrent_duplicates_apply_once(with_counter: AsyncEngine) -> None:
    answers = await asyncio.gather(*(add(with_counter, "same", 3) for _ in range(20)))
    assert {a.value for a in answers} == {3}
    assert await counter(with_counter) == 3


async def test_same_id_with_another_request_is_refused(with_counter: AsyncEngine) -> None:
    await add(with_counter, "req-9", 5)
    with pytest.raises(InvalidArgument) as raised:
        await add(with_counter, "req-9", 6)
    assert raised.value.reason == "REQUEST_ID_REUSED"
    assert [v.field for v in raised.value.field_violations] == ["request_id"]
    assert await counter(with_counter) == 5


async def test_failed_first_attempt_leaves_the_id_free(with_counter: AsyncEngine) -> None:
    request = wrappers_pb2.Int64Value(value=4)
    with pytest.raises(RuntimeError):
        async with UnitOfWork(db.session_factory(with_counter), "loyalty") as uow:
            assert (
                await uow.idempotency.claim(SCOPE, "req-x", request, wrappers_pb2.Int64Value)
                is None
            )
            raise RuntimeError("crashed before commit")
    assert (await add(with_counter, "req-x", 4)).value == 4


@pytest.mark.parametrize("bad", ["", " spaces ", "x" * 129, "ünicode"])
async def test_request_id_must_be_present_and_plain(with_counter: AsyncEngine, bad: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await add(with_counter, bad, 1)
    assert raised.value.field_violations[0].field == "request_id"
    assert await counter(with_counter) == 0


async def test_a_remembered_flow_answers_every_retry_with_the_first_answer_kept(
    kit_db: AsyncEngine,
) -> None:
    """run_remembered: no transaction open while the flow runs; duplicates at once all get
    the answer kept first; a different request under the same id is refused."""
    sessions = db.session_factory(kit_db)
    runs: list[int] = []

    async def open_transactions() -> int:
        async with kit_db.connect() as conn:
            found = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            )
        return int(found or 0)

    async def flow(points: int, request_id: str = "flow-1") -> wrappers_pb2.Int64Value:
        async def work() -> wrappers_pb2.Int64Value:
            runs.append(points)
            open_now.append(await open_transactions())
            await asyncio.sleep(0.02)  # duplicates overlap here
            return wrappers_pb2.Int64Value(value=len(runs))

        return await run_remembered(
            lambda: UnitOfWork(sessions, "loyalty"),
            "loyalty.test.v1.Flow/Run:client",
            points_pb.RedeemPointsRequest(request_id=request_id, points=points),
            wrappers_pb2.Int64Value,
            work,
        )

    open_now: list[int] = []
    await flow(1, "alone")
    assert open_now == [0]  # nothing held open while the flow runs
    answers = await asyncio.gather(*(flow(7) for _ in range(5)))
    assert len({a.value for a in answers}) == 1  # every duplicate answers with the first kept
    ran = len(runs)
    again = await flow(7)
    assert again == answers[0] and len(runs) == ran  # a later retry does not run the flow
    with pytest.raises(InvalidArgument) as refused:
        await flow(8)
    assert refused.value.reason == "REQUEST_ID_REUSED"


async def test_a_remembered_flow_looks_up_and_keeps_its_answer_without_transactions(
    kit_db: AsyncEngine,
) -> None:
    """An unaudited flow's answer is looked up and kept by one statement each, in autocommit:
    no BEGIN and COMMIT round trips around them (the answer is still kept and given again)."""
    sent: list[str] = []

    def log_queries(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda q: sent.append(q.query))

    event.listen(kit_db.sync_engine, "connect", log_queries)
    await kit_db.dispose()  # connections made from now on log what they are sent
    sessions = db.session_factory(kit_db)
    request_id = f"kept-{uuid.uuid4()}"

    async def flow() -> wrappers_pb2.Int64Value:
        async def work() -> wrappers_pb2.Int64Value:
            return wrappers_pb2.Int64Value(value=41)

        return await run_remembered(
            lambda: UnitOfWork(sessions, "loyalty"),
            "loyalty.test.v1.Flow/Run:client",
            points_pb.RedeemPointsRequest(request_id=request_id, points=1),
            wrappers_pb2.Int64Value,
            work,
        )

    try:
        assert (await flow()).value == 41
        assert (await flow()).value == 41
        await asyncio.sleep(0)  # asyncpg hands the last statement to its loggers soon after
    finally:
        event.remove(kit_db.sync_engine, "connect", log_queries)
    statements = [q for q in sent if "kit_idempotency_keys" in q]
    assert len(statements) == 3  # looked up, kept; looked up again and found
    around = {"BEGIN", "COMMIT", "ROLLBACK"}
    assert not [q for q in sent if q.split()[0].strip(";").upper() in around]
