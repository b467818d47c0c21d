"""The benefits service's composition root: everything its servicer, consumers and jobs use,
built once per process from the kit's context. Tests hand in their own clock, points bank or
segments (`runner.start(SPEC, settings, clock=clock, points_bank=bank)`)."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext
from loyalty_kit.servicers import UnitOfWorkFactory
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_benefits.adapters.points import GrpcPointsBank
from loyalty_benefits.adapters.segments import GrpcDynamicSegments, GrpcSegments
from loyalty_benefits.adapters.stores.catalogue import CatalogueCache
from loyalty_benefits.service_layer.issuances import CouponIssuer
from loyalty_benefits.service_layer.ports import DynamicSegments, Segments
from loyalty_benefits.service_layer.rewards import PointsBank, RewardRedemptions
from loyalty_benefits.service_layer.uow import BenefitsUnitOfWork


class BenefitsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_BENEFITS_", extra="ignore")

    recovery_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often reward redemptions left half-way are finished."
    )
    recovery_after_seconds: float = Field(
        default=60.0, gt=0, description="How long a redemption may stand half-way before then."
    )
    birthday_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often today's birthday coupons are granted."
    )
    fixed_welcome_gifts: bool = Field(
        default=False,
        description="Grant a tier's welcome coupon on an upgrade here, as before journeys "
        "(engagement's 'upgrade -> welcome gift' journey does it now; kept for one release). "
        "Both on never issue twice: they share the grant key welcome:{tier}.",
    )
    fixed_birthday_gifts: bool = Field(
        default=False,
        description="Grant the tier's birthday coupon here (the hourly job and "
        "RunBirthdayGifts), as before journeys (engagement's birthday journey does it now; "
        "kept for one release).",
    )
    issuance_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often coupon issuances left running (by a stopped replica) are looked "
        "for; a replica starts on the ones it creates at once.",
    )


@dataclass(frozen=True)
class Benefits:
    context: ServiceContext
    settings: BenefitsSettings
    clock: Clock
    uow: UnitOfWorkFactory[BenefitsUnitOfWork]
    redemptions: RewardRedemptions  # reward redemptions, debiting the points service
    issuer: CouponIssuer  # bulk coupon issuances, reading segments from the identity service


def bootstrap(
    context: ServiceContext,
    *,
    clock: Clock = utc_now,
    points_bank: PointsBank | None = None,
    segments: Segments | None = None,
    dynamic_segments: DynamicSegments | None = None,
) -> Benefits:
    sessions, namespace = context.database, context.settings.event_namespace
    catalogue = CatalogueCache()  # the catalogue parsed once per version, for every unit of work

    def uow(*, read_only: bool = False) -> BenefitsUnitOfWork:
        return BenefitsUnitOfWork(sessions, namespace, read_only=read_only, catalogue=catalogue)

    bank = points_bank or GrpcPointsBank(context.settings)
    members = segments or GrpcSegments(context.settings)
    return Benefits(
        context,
        BenefitsSettings(),
        clock,
        uow,
        RewardRedemptions(uow, bank, clock),
        CouponIssuer(
            uow, members, clock, dynamic_segments or GrpcDynamicSegments(context.settings)
        ),
    )
