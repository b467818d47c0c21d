"""A leaderboard's period close over 1,000,000 members (issue 19: under a minute).

A referrals leaderboard (a quarter, group-wide) with a threshold reward (5 referrals: a coupon,
"a month of free parking") and a rank reward (the top 3: bonus points); `--members` members'
scores in a past quarter, most with 0 to 3 referrals and one in 500 with 5 to 11. The close
(`service_layer/challenges.py` `close_period`: the close's mark and one ranking statement per
reward in one transaction, then the payouts paid a chunk of 100 a transaction, through an
in-process stand-in for points and benefits that answers at once) against the raw ceiling: the
same ranking as one plain SELECT on an asyncpg connection (what any close must at least read).
One JSON object on stdout (and `--out`).

    .venv/bin/python -m bench.engagement_leaderboard --members 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loyalty_devstack.embedded import EmbeddedPostgres
from loyalty_engagement.domain.challenges import (
    LeaderboardReward,
    LeaderboardSpec,
    Metric,
    WindowKind,
)
from loyalty_engagement.service_layer.challenges import close_period
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork
from loyalty_kit import db
from loyalty_kit.db import driver_connection
from loyalty_kit.migrations import upgrade
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.standalone import emit

PERIOD = "2025-Q3"
BOARD = "bench-referrals"
GOAL_SECONDS = 60.0
SPEC = LeaderboardSpec(
    display_name="Referrals of the quarter",
    unit="group",
    metric=Metric.REFERRALS,
    scope_unit="",
    period=WindowKind.QUARTER,
    rewards=(
        LeaderboardReward(threshold=5, coupon_template="free-parking-month"),
        LeaderboardReward(rank=3, points=1000, funding_unit="group"),
    ),
)
RANKED = (
    "SELECT count(*) FILTER (WHERE score >= 5) + count(*) FILTER (WHERE rank <= 3) FROM ("
    " SELECT score, rank() OVER (ORDER BY score DESC) AS rank FROM leaderboard_scores"
    " WHERE metric = 'referrals' AND scope = 'group' AND period = $1) ranked"
)


@dataclass
class AnsweringActions:
    """Points and benefits answering at once: the close's own cost is what is measured."""

    calls: list[str] = field(default_factory=list)

    async def award_points(
        self, member_id: str, points: int, funding_unit: str, reason: str, key: str
    ) -> str:
        self.calls.append(key)
        return key

    async def issue_coupon(
        self, member_id: str, template: str, unit: str, key: str, grant_key: str = ""
    ) -> str:
        self.calls.append(key)
        return key

    async def change_tags(
        self, member_id: str, add: tuple[str, ...], remove: tuple[str, ...], key: str
    ) -> None:
        raise NotImplementedError

    async def consents(self, member_id: str) -> frozenset[str]:
        raise NotImplementedError

    async def withdraw_consent(self, member_id: str, purpose: str, key: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


@dataclass
class Prepared:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    members: int
    load_seconds: float

    def uow(self, read_only: bool = False) -> EngagementUnitOfWork:
        return EngagementUnitOfWork(self.sessions, "bench", read_only=read_only)


async def prepare(url: URL, members: int) -> Prepared:
    engine = db.create_engine(url, pool_size=4)
    await upgrade(engine, "loyalty_engagement:migrations")
    sessions = db.session_factory(engine)
    began = time.perf_counter()
    async with EngagementUnitOfWork(sessions, "bench") as work:
        conn = await driver_connection(work.session)
        await conn.execute("DELETE FROM leaderboard_scores WHERE period = $1", PERIOD)
        await conn.execute(
            "INSERT INTO leaderboard_scores (metric, scope, period, member_id, score) "
            "SELECT 'referrals', 'group', $1, md5(i::text), "
            "CASE WHEN i % 500 = 0 THEN 5 + i % 7 ELSE i % 4 END "
            "FROM generate_series(1, $2::int) AS i",
            PERIOD,
            members,
        )
        await conn.execute("DELETE FROM leaderboards WHERE leaderboard_id = $1", BOARD)
        await work.challenges.add_leaderboard(BOARD, SPEC, datetime.now(UTC))
        await conn.execute("ANALYZE leaderboard_scores")
        await work.commit()
    return Prepared(engine, sessions, members, round(time.perf_counter() - began, 1))


async def reopen(prepared: Prepared) -> None:
    """Forget the period's close and payouts: the next close does all the work again."""
    async with prepared.uow() as work:
        conn = await driver_connection(work.session)
        for table in ("leaderboard_payouts", "leaderboard_closes"):
            await conn.execute(f"DELETE FROM {table} WHERE leaderboard_id = $1", BOARD)
        await work.commit()


async def through_service(prepared: Prepared) -> dict[str, Any]:
    await reopen(prepared)
    actions = AnsweringActions()
    began = time.perf_counter()
    closed = await close_period(prepared.uow, actions, BOARD, PERIOD, datetime.now(UTC))
    seconds = time.perf_counter() - began
    again = await close_period(prepared.uow, actions, BOARD, PERIOD, datetime.now(UTC))
    return {
        "seconds": round(seconds, 2),
        "rewards_paid": closed.paid,
        "rewards_total": closed.total,
        "paid_again": again.paid,
        "calls": len(actions.calls),
    }


async def raw(prepared: Prepared) -> dict[str, Any]:
    async with prepared.uow(read_only=True) as work:
        conn = await driver_connection(work.session)
        began = time.perf_counter()
        owed = await conn.fetchval(RANKED, PERIOD)
        return {"seconds": round(time.perf_counter() - began, 2), "rewards_owed": owed}


async def run(members: int, data_dir: Path) -> dict[str, Any]:
    pg = EmbeddedPostgres(data_dir, keep=False)
    server = make_url(pg.start().replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        await db.ensure_database(server, "engagement_leaderboard_bench")
        prepared = await prepare(server.set(database="engagement_leaderboard_bench"), members)
        ceiling = await raw(prepared)
        close = await through_service(prepared)
        await prepared.engine.dispose()
        return {
            "members": members,
            "load_seconds": prepared.load_seconds,
            "raw": ceiling,
            "close": close,
            "goal_seconds": GOAL_SECONDS,
            "goal_met": close["seconds"] < GOAL_SECONDS,
        }
    finally:
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engagement-leaderboard-") as data_dir:
        found = asyncio.run(run(args.members, Path(data_dir)))
    emit("engagement_leaderboard", found, args.out)


if __name__ == "__main__":
    main()
