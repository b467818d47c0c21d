"""The benefits service's background work: reward redemptions left half-way are finished,
coupon issuances carried out, and (with `LOYALTY_BENEFITS_FIXED_BIRTHDAY_GIFTS`) today's
birthday coupons granted."""

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

    # Birthday coupons are engagement's birthday journey's unless the fixed job is kept on.
    return [rewards, daily, issuances] if settings.fixed_birthday_gifts else [rewards, issuances]
