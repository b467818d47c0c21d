"""request_id idempotency: a retry returns the first answer and writes nothing new."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import wrappers_pb2
from loyalty_kit import db
from loyalty_kit.errors import InvalidArgument
from loyalty_kit.uow import UnitOfWork
from sqlalchemy import text
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
