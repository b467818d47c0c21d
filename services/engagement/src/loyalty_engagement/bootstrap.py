"""The engagement service's composition root: what its servicer and consumers use, built once
per process from the kit's context. Tests hand in their own clock
(`runner.start(SPEC, settings, clock=clock)`)."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_engagement.adapters.peers import GrpcActions
from loyalty_engagement.adapters.sink import DevelopmentSink
from loyalty_engagement.service_layer.ports import Actions, register_channel
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork


class EngagementSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_ENGAGEMENT_", extra="ignore")

    timer_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the journeys' timer runs the sweeps and the due waiting entries.",
    )


@dataclass(frozen=True)
class Engagement:
    context: ServiceContext
    clock: Clock
    actions: Actions  # benefits, points and identity, on the service's own account
    settings: EngagementSettings

    def uow(self, *, read_only: bool = False) -> EngagementUnitOfWork:
        return EngagementUnitOfWork(
            self.context.database, self.context.settings.event_namespace, read_only=read_only
        )


def bootstrap(context: ServiceContext, *, clock: Clock = utc_now) -> Engagement:
    register_channel("dev", DevelopmentSink())
    return Engagement(context, clock, GrpcActions(context.settings), EngagementSettings())
