"""The tiers service's scheduled work: ended grants fall back, ended tier years are judged, and
members whose imported past orders may upgrade them are judged (every second: those whose last
imported order came in a while ago)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_tiers.bootstrap import Tiers
from loyalty_tiers.service_layer import grants, orders, tier_year


def jobs(app: Tiers) -> Sequence[Job]:
    async def once() -> None:
        await grants.run_grant_expiry(app.uow, app.clock())
        await tier_year.run_year_end(app.uow, app.clock(), 500)

    async def scheduled() -> None:
        await every(app.settings.job_interval_seconds, app.context.stopping, once, "tier-year-end")

    settle = timedelta(seconds=app.settings.upgrade_settle_seconds)

    async def judge() -> None:
        await orders.run_judgement(app.uow, app.clock, 500, settle)

    async def upgrades() -> None:
        await every(app.settings.upgrade_interval_seconds, app.context.stopping, judge, "upgrades")

    return [scheduled, upgrades]
