"""The insights service's scheduled work: dynamic segments' incremental evaluation (members
whose figures changed, every fraction of a second) and their full evaluation (hourly)."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_insights.bootstrap import Insights
from loyalty_insights.service_layer import segments


def jobs(app: Insights) -> Sequence[Job]:
    async def incremental() -> None:
        await segments.evaluate_changed(app.uow, app.clock)

    async def full() -> None:
        await segments.evaluate_all(app.uow, app.clock)

    async def changed_figures() -> None:
        await every(app.segments.incremental_seconds, app.context.stopping, incremental, "segments")

    async def scheduled() -> None:
        await every(app.segments.full_seconds, app.context.stopping, full, "segments-full")

    return [changed_figures, scheduled]
