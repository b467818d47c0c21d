"""The insights service's composition root: what its servicer, consumers and jobs use, built
once per process from the kit's context. Tests hand in their own clock
(`runner.start(SPEC, settings, clock=clock)`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty_insights.service_layer.clv_fitter import LifetimeValueFitter
from loyalty_insights.service_layer.uow import InsightsUnitOfWork


class InsightsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_INSIGHTS_", extra="ignore")

    clv_interval_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="How often the lifetime value models are fitted on schedule (a day).",
    )
    clv_poll_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often a replica looks for lifetime value fits another one asked for.",
    )
    clv_batch_size: int = Field(
        default=5_000, gt=0, description="Members' predictions stored per transaction."
    )


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
    settings: InsightsSettings
    fitter: LifetimeValueFitter  # the lifetime value fits (the service's job)
    segments: SegmentSettings = field(default_factory=SegmentSettings)

    def uow(self, *, read_only: bool = False) -> InsightsUnitOfWork:
        return InsightsUnitOfWork(
            self.context.database, self.context.settings.event_namespace, read_only=read_only
        )

    def fits_waiting(self) -> None:
        """A fit was asked for: this replica's fitter looks at once."""
        self.fitter.wake.set()


def bootstrap(context: ServiceContext, *, clock: Clock = utc_now) -> Insights:
    settings = InsightsSettings()

    def uow(*, read_only: bool = False) -> InsightsUnitOfWork:
        return InsightsUnitOfWork(
            context.database, context.settings.event_namespace, read_only=read_only
        )

    def engine() -> AsyncEngine:
        if context.engine is None:
            raise RuntimeError("insights has no database engine")
        return context.engine

    fitter = LifetimeValueFitter(
        uow,
        clock,
        engine,
        interval_seconds=settings.clv_interval_seconds,
        poll_seconds=settings.clv_poll_seconds,
        batch_size=settings.clv_batch_size,
    )
    return Insights(context, clock, settings, fitter)
