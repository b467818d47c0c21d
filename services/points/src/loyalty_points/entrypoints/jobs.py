"""The points service's scheduled work: pending points become available, expired lots expire."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty_kit.jobs import every
from loyalty_kit.logs import get_logger
from loyalty_kit.server import Job

from loyalty_points.bootstrap import Points
from loyalty_points.service_layer import jobs as steps

log = get_logger("loyalty.points")


def jobs(app: Points) -> Sequence[Job]:
    async def once() -> None:
        now = app.clock()
        activated = await steps.run_in_chunks(
            app.uow, lambda uow, size: steps.activate_pending_chunk(uow, now, size, now)
        )
        expired = await steps.run_in_chunks(
            app.uow, lambda uow, size: steps.expire_chunk(uow, now, size, now)
        )
        if activated.items or expired.items:
            log.info(
                "scheduled jobs",
                activated_points=activated.points,
                expired_points=expired.points,
                expired_members=expired.members,
            )

    async def scheduled() -> None:
        interval = app.settings.job_interval_seconds
        await every(interval, app.context.stopping, once, "points-pending-and-expiry")

    return [scheduled]
