"""The insights service's composition root: what its servicer and consumers use, built once per
process from the kit's context. Tests hand in their own clock
(`runner.start(SPEC, settings, clock=clock)`)."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext

from loyalty_insights.service_layer.uow import InsightsUnitOfWork


@dataclass(frozen=True)
class Insights:
    context: ServiceContext
    clock: Clock

    def uow(self, *, read_only: bool = False) -> InsightsUnitOfWork:
        return InsightsUnitOfWork(
            self.context.database, self.context.settings.event_namespace, read_only=read_only
        )


def bootstrap(context: ServiceContext, *, clock: Clock = utc_now) -> Insights:
    return Insights(context, clock)
