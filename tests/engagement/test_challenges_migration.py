"""Migration 0007 carries the progress counted before it over as purchases of its own: a
purchase goal's progress, recomputed from its purchases after the upgrade, is what it was."""

from __future__ import annotations

import itertools
import json

from loyalty_engagement.adapters.challenges import ChallengeStore
from loyalty_engagement.domain import challenges as c
from loyalty_kit import db, migrations
from loyalty_kit.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_numbers = itertools.count()
GOALS = {
    "purchases": (c.GoalKind.PURCHASES, 3, "0", []),
    "spend": (c.GoalKind.SPEND, 250, "250.50", []),
    "units": (c.GoalKind.DISTINCT_UNITS, 2, "0", ["hotel", "mall"]),
}


async def test_progress_counted_before_0007_is_carried_over(settings: Settings) -> None:
    name = f"carried{next(_numbers)}"
    await db.ensure_database(settings.server_url, settings.database_for(name))
    engine = db.create_engine(settings.service_database_url(name), pool_size=1)
    try:
        await migrations.upgrade(engine, "loyalty_engagement:migrations", "0005")
        async with engine.begin() as conn:
            for cid, (kind, value, spend, units) in GOALS.items():
                await conn.execute(
                    text(
                        "INSERT INTO challenges (challenge_id, unit, goal_kind, spec, start_at,"
                        " created_at) VALUES (:cid, 'group', :kind, :spec, now(), now())"
                    ),
                    {"cid": cid, "kind": kind.value, "spec": json.dumps({"display_name": cid})},
                )
                await conn.execute(
                    text(
                        "INSERT INTO challenge_progress (challenge_id, member_id, period, value,"
                        " spend, units, updated_at) VALUES (:cid, 'm1', '2026-12', :value,"
                        " :spend, :units, now())"
                    ),
                    {"cid": cid, "value": value, "spend": spend, "units": units},
                )
        await migrations.upgrade(engine, "loyalty_engagement:migrations")
        async with AsyncSession(engine) as session:
            store = ChallengeStore(session)
            for cid, (kind, value, spend, units) in GOALS.items():
                kept = await store.period_purchases(cid, "m1", "2026-12")
                progress = c.purchase_progress(c.Goal(kind, 1), kept)
                assert progress.value == value, cid
                if kind is c.GoalKind.SPEND:
                    assert str(progress.spend) == spend
                if kind is c.GoalKind.DISTINCT_UNITS:
                    assert sorted(progress.units) == units
    finally:
        await engine.dispose()
