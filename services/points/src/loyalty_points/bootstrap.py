"""The points service's composition root: everything its servicer, consumers and jobs use, built
once per process from the kit's context. Tests hand in their own clock or member directory
(`runner.start(SPEC, settings, clock=clock)`)."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_points.adapters.members import IdentityDirectory
from loyalty_points.adapters.programmes import ProgrammeCache
from loyalty_points.service_layer.ports import MemberDirectory
from loyalty_points.service_layer.uow import PointsUnitOfWork


class PointsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_POINTS_", extra="ignore")

    job_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often pending activation and expiry run."
    )


@dataclass(frozen=True)
class Points:
    context: ServiceContext
    settings: PointsSettings
    clock: Clock
    programmes: ProgrammeCache  # the programme in force, shared by every unit of work
    directory: MemberDirectory  # the identity service, asked about members met first

    def uow(self, *, read_only: bool = False) -> PointsUnitOfWork:
        return PointsUnitOfWork(
            self.context.database,
            self.context.settings.event_namespace,
            read_only=read_only,
            programmes=self.programmes,
        )


def bootstrap(
    context: ServiceContext,
    *,
    clock: Clock = utc_now,
    directory: MemberDirectory | None = None,
) -> Points:
    return Points(
        context,
        PointsSettings(),
        clock,
        ProgrammeCache(),
        directory or IdentityDirectory(context.settings),
    )
