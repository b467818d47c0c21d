"""Keeping the kit's tables small: published outbox rows, old inbox entries and expired
idempotency keys are deleted in batches, by every service that has a database.

Retention (settings): a request_id is honoured for `idempotency_retention_hours` (a client
retrying later than that gets a new operation); consumers remember events for
`inbox_retention_days` (far longer than any JetStream redelivery); published outbox rows are kept
`outbox_retention_days` for inspection.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty_kit.jobs import every
from loyalty_kit.logs import get_logger
from loyalty_kit.settings import Settings

log = get_logger("loyalty.housekeeping")

BATCH = 5000

_PURGES = (
    ("kit_outbox", "published_at IS NOT NULL AND published_at < :before", "outbox_retention_days"),
    ("kit_inbox", "processed_at < :before", "inbox_retention_days"),
    ("kit_idempotency_keys", "created_at < :before", "idempotency_retention_hours"),
)


async def purge(engine: AsyncEngine, settings: Settings, now: datetime | None = None) -> int:
    """Delete what is past retention, in batches; the number of rows deleted."""
    now = now or datetime.now(UTC)
    total = 0
    for table, condition, knob in _PURGES:
        amount = float(getattr(settings, knob))
        before = now - (
            timedelta(hours=amount) if knob.endswith("hours") else timedelta(days=amount)
        )
        key = "seq" if table == "kit_outbox" else "ctid"
        while True:
            async with engine.begin() as conn:
                result = await conn.execute(
                    text(
                        f"DELETE FROM {table} WHERE {key} IN "
                        f"(SELECT {key} FROM {table} WHERE {condition} LIMIT {BATCH})"
                    ),
                    {"before": before},
                )
            total += result.rowcount or 0
            if (result.rowcount or 0) < BATCH:
                break
    return total


async def run(engine: AsyncEngine, settings: Settings, stopping: asyncio.Event) -> None:
    async def once() -> None:
        deleted = await purge(engine, settings)
        if deleted:
            log.info("housekeeping", deleted=deleted)

    await every(settings.housekeeping_interval_seconds, stopping, once, "housekeeping")
