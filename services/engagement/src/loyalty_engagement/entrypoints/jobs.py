"""The engagement service's background work, run by every replica: the journeys' timer (sweeps
that enter members by time, then the due waiting entries), every
`LOYALTY_ENGAGEMENT_TIMER_INTERVAL_SECONDS`, and the webhook delivery loop (a delivery is taken
by one replica at a time, FOR UPDATE SKIP LOCKED), every
`LOYALTY_ENGAGEMENT_WEBHOOK_INTERVAL_SECONDS`; and every leaderboard's ended period closed (its
rewards paid once), checked hourly: a replica that finds a period closed already passes over it."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_engagement.bootstrap import Engagement
from loyalty_engagement.service_layer import channels, timer
from loyalty_engagement.service_layer.challenges import close_ended_periods

CLOSE_EVERY_SECONDS = 3600.0


def jobs(app: Engagement) -> Sequence[Job]:
    async def once() -> None:
        await timer.sweep(app.uow, app.clock)
        await timer.run_due(app.uow, app.actions, app.clock)

    async def scheduled() -> None:
        await every(
            app.settings.timer_interval_seconds, app.context.stopping, once, "journeys-timer"
        )

    async def deliver() -> None:
        # A full batch: more may be due, taken at once rather than after the interval.
        while (
            await channels.deliver_due(app.uow, app.sender, app.secrets, app.delivery, app.clock)
            >= app.delivery.batch
        ):
            pass

    async def webhooks() -> None:
        try:
            await every(
                app.settings.webhook_interval_seconds, app.context.stopping, deliver, "webhooks"
            )
        finally:
            await app.sender.close()

    async def close() -> None:
        await close_ended_periods(app.uow, app.actions, app.clock())

    async def leaderboards() -> None:
        await every(CLOSE_EVERY_SECONDS, app.context.stopping, close, "leaderboards-close")

    return [scheduled, webhooks, leaderboards]
