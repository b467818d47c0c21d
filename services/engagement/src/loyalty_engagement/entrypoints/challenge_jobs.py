"""The challenges' scheduled work: every leaderboard's ended period closed (its rewards paid
once), checked hourly; a replica that finds a period closed already passes over it."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_engagement.bootstrap import Engagement
from loyalty_engagement.service_layer.challenges import close_ended_periods

CLOSE_EVERY_SECONDS = 3600.0


def jobs(app: Engagement) -> Sequence[Job]:
    async def close() -> None:
        await close_ended_periods(app.uow, app.actions, app.clock())

    async def scheduled() -> None:
        await every(CLOSE_EVERY_SECONDS, app.context.stopping, close, "leaderboards-close")

    return [scheduled]
