"""The tiers service's composition root: everything its servicer, consumers and jobs use, built
once per process from the kit's context. Tests hand in their own clock
(`runner.start(SPEC, settings, clock=clock)`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_tiers.adapters.repository import LadderCache
from loyalty_tiers.service_layer.uow import TiersUnitOfWork


class TiersSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_TIERS_", extra="ignore")

    job_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often ended tier years are judged and ended grants fall back.",
    )
    upgrade_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often members whose imported past orders may upgrade them are judged.",
    )
    upgrade_settle_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long no imported order may have come in for a member before it is "
        "judged (an import's member is judged once, not once per chunk, and mostly after the "
        "import rather than in its way).",
    )


@dataclass(frozen=True)
class Tiers:
    context: ServiceContext
    settings: TiersSettings
    clock: Clock
    # The ladder parsed once per version, for every unit of work of the process.
    ladders: LadderCache = field(default_factory=LadderCache)

    def uow(self, *, read_only: bool = False) -> TiersUnitOfWork:
        return TiersUnitOfWork(
            self.context.database,
            self.context.settings.event_namespace,
            read_only=read_only,
            ladders=self.ladders,
        )


def bootstrap(context: ServiceContext, *, clock: Clock = utc_now) -> Tiers:
    return Tiers(context, TiersSettings(), clock)
