"""The insights service's scheduled work: every member's figures refreshed every
`insights_refresh_interval_seconds` (incrementally; from the facts when the last full refresh
is `insights_full_refresh_interval_seconds` old), and once at start when there are facts but no
refresh yet (members are also recomputed as their events arrive); the lifetime value fitter
(service_layer/clv_fitter.py); dynamic segments' incremental evaluation (members whose figures
changed, every fraction of a second) and their full evaluation (hourly)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import partial

from loyalty_kit.jobs import every
from loyalty_kit.logs import get_logger
from loyalty_kit.server import Job

from loyalty_insights.bootstrap import Insights
from loyalty_insights.service_layer import segments
from loyalty_insights.service_layer.refresh import (
    RefreshRunning,
    needs_first_refresh,
    rebuild_offers,
    refresh_figures,
    settle_refresh,
)

log = get_logger("loyalty.insights.jobs")


def jobs(app: Insights) -> Sequence[Job]:
    first = True

    async def once() -> None:
        nonlocal first
        if first:
            first = False
            async with app.uow(read_only=True) as uow:
                if not await needs_first_refresh(uow):
                    return
        async with app.uow() as uow:
            try:
                report = await refresh_figures(
                    uow,
                    app.clock,
                    full_every=timedelta(
                        seconds=app.context.settings.insights_full_refresh_interval_seconds
                    ),
                )
            except RefreshRunning:
                return  # another replica's refresh does it
            await uow.commit()
        settled = await settle_refresh(app.uow, app.clock)
        await rebuild_offers(app.uow, app.clock)
        log.info(
            "figures refreshed",
            members=report.members,
            rescored=settled,
            removed=report.removed,
            full=report.full,
            written=report.written,
            seconds=round(report.duration.total_seconds(), 3),
        )

    async def scheduled() -> None:
        await every(
            app.context.settings.insights_refresh_interval_seconds,
            app.context.stopping,
            once,
            "figures-refresh",
        )

    async def segments_incremental() -> None:
        await segments.evaluate_changed(app.uow, app.clock)

    async def segments_full() -> None:
        await segments.evaluate_all(app.uow, app.clock)

    async def changed_figures() -> None:
        await every(
            app.segments.incremental_seconds, app.context.stopping, segments_incremental, "segments"
        )

    async def segments_scheduled() -> None:
        await every(app.segments.full_seconds, app.context.stopping, segments_full, "segments-full")

    return [
        scheduled,
        partial(app.fitter.serve, app.context.stopping),
        changed_figures,
        segments_scheduled,
    ]
