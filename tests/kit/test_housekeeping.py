"""The kit's tables do not grow forever: what is past retention is deleted, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import wrappers_pb2
from loyalty_kit import db, housekeeping
from loyalty_kit.settings import Settings
from loyalty_kit.uow import UnitOfWork
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def counts(engine: AsyncEngine) -> tuple[int, int, int]:
    async with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            [
                int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
                for table in ("kit_outbox", "kit_inbox", "kit_idempotency_keys")
            ]
        )


async def test_purge_deletes_only_what_is_past_retention(
    kit_db: AsyncEngine, settings: Settings
) -> None:
    sessions = db.session_factory(kit_db)
    for request_id in ("old", "new"):
        async with UnitOfWork(sessions, "loyalty") as uow:
            await uow.idempotency.claim(
                "scope", request_id, wrappers_pb2.Int64Value(), wrappers_pb2.Int64Value
            )
            await uow.commit()
    async with kit_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO kit_outbox (event_id, subject, event_type, payload, published_at) "
                "VALUES (gen_random_uuid(), 's', 't', '', now() - interval '8 days'), "
                "(gen_random_uuid(), 's', 't', '', now() - interval '1 day'), "
                "(gen_random_uuid(), 's', 't', '', NULL)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO kit_inbox (consumer, event_id, processed_at) VALUES "
                "('c', 'e1', now() - interval '31 days'), ('c', 'e2', now())"
            )
        )
        await conn.execute(
            text(
                "UPDATE kit_idempotency_keys SET created_at = now() - interval '73 hours' "
                "WHERE request_id = 'old'"
            )
        )
    assert await counts(kit_db) == (3, 2, 2)
    deleted = await housekeeping.purge(kit_db, settings, datetime.now(UTC) + timedelta(seconds=1))
    assert deleted == 3
    # Kept: the recent and the unpublished outbox rows, the recent inbox entry and key.
    assert await counts(kit_db) == (2, 1, 1)
