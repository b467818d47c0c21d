"""The benefits service's background work: reward redemptions left half-way are finished,
today's birthday coupons granted, coupon issuances carried out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_benefits.bootstrap import Benefits
from loyalty_benefits.service_layer import handlers


def jobs(app: Benefits) -> Sequence[Job]:
    settings, stopping = app.settings, app.context.stopping

    async def recover() -> None:
        await app.redemptions.recover(timedelta(seconds=settings.recovery_after_seconds))

    async def rewards() -> None:
        await every(settings.recovery_interval_seconds, stopping, recover, "rewards")

    async def birthdays() -> None:
        await handlers.run_birthday_gifts(app.uow, app.clock(), 500)

    async def daily() -> None:
        await every(settings.birthday_interval_seconds, stopping, birthdays, "birthdays")

    async def issuances() -> None:
        await app.issuer.serve(settings.issuance_interval_seconds, stopping)

    return [rewards, daily, issuances]
