"""The tiers service's scheduled work: ended grants fall back, ended tier years are judged."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_tiers.bootstrap import Tiers
from loyalty_tiers.service_layer import grants, tier_year


def jobs(app: Tiers) -> Sequence[Job]:
    async def once() -> None:
        await grants.run_grant_expiry(app.uow, app.clock())
        await tier_year.run_year_end(app.uow, app.clock(), 500)

    async def scheduled() -> None:
        await every(app.settings.job_interval_seconds, app.context.stopping, once, "tier-year-end")

    return [scheduled]
