"""The inactivity sweep at a million members (issue 19): a scratch embedded PostgreSQL (or the
run's database in `make bench`), the engagement migrations, `--members` members' last
purchases spread over the past 15 months, and a win-back journey (inactive for 90 days) made a
year before. Then the sweep as the timer runs it (`timer.sweep`: the journey's progress row
locked, the members who crossed 90 days since entered, one entry per spell) against the raw
ceiling, the same INSERT ... SELECT on one plain asyncpg connection into another journey; both
enter the same members. Goal: under 2 minutes at 1,000,000 members. One JSON object on stdout
(and `--out`).

    .venv/bin/python -m bench.engagement_sweep --members 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loyalty_devstack.embedded import EmbeddedPostgres
from loyalty_engagement.domain.journeys import (
    IssueCoupon,
    JourneySpec,
    JourneyState,
    Trigger,
    TriggerKind,
)
from loyalty_engagement.service_layer import timer
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork
from loyalty_kit import db
from loyalty_kit.db import driver_connection
from loyalty_kit.migrations import upgrade
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.standalone import emit

GOAL_SECONDS = 120.0
DAYS = 90
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
SPEC = JourneySpec(
    display_name="win-back (bench)",
    unit="group",
    trigger=Trigger(TriggerKind.INACTIVE, days=DAYS),
    steps=(IssueCoupon("mall-voucher-100", "mall"),),
)


@dataclass
class Prepared:
    engine: AsyncEngine
    members: int
    load_seconds: float

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            self._sessions = db.session_factory(self.engine)
        return self._sessions

    _sessions: async_sessionmaker[AsyncSession] | None = None

    def uow(self) -> EngagementUnitOfWork:
        return EngagementUnitOfWork(self.sessions, "bench")


async def prepare(url: URL, members: int) -> Prepared:
    """Migrate, and load the members' last purchases (one every 15 months / members apart)."""
    engine = db.create_engine(url, pool_size=4)
    await upgrade(engine, "loyalty_engagement:migrations")
    started = time.perf_counter()
    async with engine.begin() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.execute("TRUNCATE member_activity")
        await driver.execute(
            """
            INSERT INTO member_activity (member_id, last_purchase_at)
            SELECT 'member-' || g, $1::timestamptz - (g % 456) * interval '1 day'
                   - (g % 86400) * interval '1 second'
            FROM generate_series(1, $2::int) AS g
            """,
            NOW,
            members,
        )
        await driver.execute("ANALYZE member_activity")
    return Prepared(engine, members, time.perf_counter() - started)


async def _journey(prepared: Prepared) -> str:
    """A win-back journey made a year before NOW (its first sweep looks back that far), into
    empty tables (the only journey the sweep finds; each measured sweep inserts into tables
    of the same size)."""
    journey_id = str(uuid.uuid4())
    async with prepared.uow() as uow:
        conn = await driver_connection(uow.session)
        await conn.execute("TRUNCATE journeys, journey_versions, journey_entries, journey_sweeps")
        await uow.journeys.add(journey_id, SPEC, JourneyState.ACTIVE, NOW - timedelta(days=365))
        await uow.commit()
    return journey_id


def _at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


async def through_service(prepared: Prepared) -> tuple[float, int]:
    """Seconds and members entered: the sweep as the timer runs it."""
    await _journey(prepared)
    started = time.perf_counter()
    entered = await timer.sweep(prepared.uow, _at(NOW))
    return time.perf_counter() - started, entered


async def raw(prepared: Prepared) -> tuple[float, int]:
    """Seconds and members entered: the same INSERT ... SELECT on one plain connection."""
    journey_id = await _journey(prepared)
    since, until = NOW - timedelta(days=365 + DAYS), NOW - timedelta(days=DAYS)
    async with prepared.uow() as uow:
        conn = await driver_connection(uow.session)
        started = time.perf_counter()
        status = await conn.execute(
            """
            INSERT INTO journey_entries (entry_id, journey_id, version, member_id, trigger_key,
                unit, state, entered_at, updated_at, next_step, due_at, waiting)
            SELECT md5('journey:' || $1 || ':1:' || member_id || ':inactive:'
                       || (extract(epoch FROM last_purchase_at) * 1000000)::bigint)::uuid::text,
                   $1, 1, member_id,
                   'inactive:' || (extract(epoch FROM last_purchase_at) * 1000000)::bigint,
                   '', 'waiting', $4, $4, 0, $4, 'admit'
            FROM member_activity
            WHERE last_purchase_at > $2 AND last_purchase_at <= $3
            ON CONFLICT DO NOTHING
            """,
            journey_id,
            since,
            until,
            NOW,
        )
        await uow.commit()
        return time.perf_counter() - started, int(status.split()[-1])


def result(
    prepared: Prepared, service: tuple[float, int], plain: tuple[float, int]
) -> dict[str, Any]:
    return {
        "members": prepared.members,
        "load_seconds": round(prepared.load_seconds, 2),
        "sweep_seconds": round(service[0], 2),
        "entered": service[1],
        "raw_seconds": round(plain[0], 2),
        "raw_entered": plain[1],
        "same_members": service[1] == plain[1],
        "ratio": round(plain[0] / service[0], 3) if service[0] else None,
        "goal_seconds": GOAL_SECONDS,
        "goal_met": service[0] < GOAL_SECONDS,
    }


async def measure(members: int, data_dir: Path) -> dict[str, Any]:
    pg = EmbeddedPostgres(data_dir, keep=False)
    server = make_url(pg.start().replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        await db.ensure_database(server, "engagement_sweep_bench")
        prepared = await prepare(server.set(database="engagement_sweep_bench"), members)
        plain = await raw(prepared)
        service = await through_service(prepared)
        await prepared.engine.dispose()
        return result(prepared, service, plain)
    finally:
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engagement-sweep-") as data_dir:
        found = asyncio.run(measure(args.members, Path(data_dir)))
    emit("engagement_sweep", found, args.out)


if __name__ == "__main__":
    main()
