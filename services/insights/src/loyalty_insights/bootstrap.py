"""The insights service's composition root: what its servicer and consumers use, built once per
process from the kit's context. Tests hand in their own clock
(`runner.start(SPEC, settings, clock=clock)`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_insights.service_layer.uow import InsightsUnitOfWork


class SegmentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_INSIGHTS_SEGMENTS_", extra="ignore")

    incremental_seconds: float = Field(
        default=0.5,
        gt=0,
        description="How often members whose figures changed are evaluated against every "
        "dynamic segment.",
    )
    full_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often every dynamic segment is evaluated in full (rules of the form "
        "'within N days' move with time alone).",
    )


@dataclass(frozen=True)
class Insights:
    context: ServiceContext
    clock: Clock
    segments: SegmentSettings = field(default_factory=SegmentSettings)

    def uow(self, *, read_only: bool = False) -> InsightsUnitOfWork:
        return InsightsUnitOfWork(
            self.context.database, self.context.settings.event_namespace, read_only=read_only
        )


def bootstrap(context: ServiceContext, *, clock: Clock = utc_now) -> Insights:
    return Insights(context, clock)
