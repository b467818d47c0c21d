"""The engagement service's scheduled work: the journeys' timer (sweeps that enter members by
time, then the due waiting entries), every `LOYALTY_ENGAGEMENT_TIMER_INTERVAL_SECONDS`."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_engagement.bootstrap import Engagement
from loyalty_engagement.service_layer import timer


def jobs(app: Engagement) -> Sequence[Job]:
    async def once() -> None:
        await timer.sweep(app.uow, app.clock)
        await timer.run_due(app.uow, app.actions, app.clock)

    async def scheduled() -> None:
        await every(
            app.settings.timer_interval_seconds, app.context.stopping, once, "journeys-timer"
        )

    return [scheduled]
