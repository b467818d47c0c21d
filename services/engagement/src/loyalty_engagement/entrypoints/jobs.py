"""The engagement service's background work: the webhook delivery loop (every replica runs
it; a delivery is taken by one at a time, FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_engagement.bootstrap import Engagement
from loyalty_engagement.service_layer import channels


def jobs(app: Engagement) -> Sequence[Job]:
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

    return [webhooks]
