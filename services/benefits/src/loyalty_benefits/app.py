"""The benefits service as the kit runs it: the servicer, the tier and member events it learns
from (merges, erasures, suspensions, reactivations, birthdays), the job that finishes reward
redemptions left half-way and the one that carries out bulk coupon issuances."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import grpc
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty_kit.events import EventMeta
from loyalty_kit.inbox import EventConsumer
from loyalty_kit.jobs import every
from loyalty_kit.server import Job, ServiceContext, ServiceSpec
from loyalty_kit.timestamps import moment, moment_of
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_benefits.adapters.points import GrpcPointsBank
from loyalty_benefits.adapters.repository import CatalogueCache
from loyalty_benefits.adapters.segments import GrpcSegments
from loyalty_benefits.entrypoints.access import ACCESS
from loyalty_benefits.entrypoints.servicer import SERVICE, BenefitsServicer
from loyalty_benefits.service_layer import handlers
from loyalty_benefits.service_layer.issuances import CouponIssuer
from loyalty_benefits.service_layer.rewards import RewardRedemptions
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
    issuance_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often coupon issuances left running (by a stopped replica) are looked "
        "for; a replica starts on the ones it creates at once.",
    )


def _clock(context: ServiceContext) -> Any:
    return context.extras.get("clock", handlers.utc_now)


def _uow_factory(context: ServiceContext) -> Any:
    assert context.sessions is not None
    sessions, namespace = context.sessions, context.settings.event_namespace
    cache = context.extras.setdefault("catalogue_cache", CatalogueCache())

    def make(*, read_only: bool = False) -> BenefitsUnitOfWork:
        return BenefitsUnitOfWork(sessions, namespace, read_only=read_only, catalogue=cache)

    return make


def _redemptions(context: ServiceContext) -> RewardRedemptions:
    """One per process; tests may put their own points bank in `extras`."""
    if "redemptions" not in context.extras:
        bank = context.extras.get("points_bank") or GrpcPointsBank(context.settings)
        context.extras["redemptions"] = RewardRedemptions(
            _uow_factory(context), bank, _clock(context)
        )
    redemptions: RewardRedemptions = context.extras["redemptions"]
    return redemptions


def _issuer(context: ServiceContext) -> CouponIssuer:
    """One per process; tests may put their own segments (identity) in `extras`."""
    if "issuer" not in context.extras:
        segments = context.extras.get("segments") or GrpcSegments(context.settings)
        context.extras["issuer"] = CouponIssuer(_uow_factory(context), segments, _clock(context))
    issuer: CouponIssuer = context.extras["issuer"]
    return issuer


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    servicer = BenefitsServicer(
        _uow_factory(context), _redemptions(context), _issuer(context), _clock(context)
    )
    benefits_service_pb2_grpc.add_BenefitsServiceServicer_to_server(servicer, server)


def consumers(context: ServiceContext) -> Sequence[EventConsumer]:
    clock = _clock(context)
    tiers = EventConsumer(
        "benefits-tiers",
        "tiers",
        _uow_factory(context),
        namespace=context.settings.event_namespace,
    )

    async def tier_changed(uow: BenefitsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await handlers.on_tier_changed(
            uow,
            e.member_id,
            e.from_tier,
            e.to_tier,
            moment(e.effective_at, "effective_at"),
            moment_of(e, "tier_year_end"),
            clock(),
            e.reason,
        )

    tiers.on(tier_events.TierChanged, tier_changed)

    members = EventConsumer(
        "benefits-members",
        "identity",
        _uow_factory(context),
        namespace=context.settings.event_namespace,
    )

    async def merged(uow: BenefitsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await handlers.on_member_merged(uow, e.survivor_member_id, e.absorbed_member_id, clock())

    async def unmerged(uow: BenefitsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await handlers.on_member_unmerged(uow, e.survivor_member_id, e.restored_member_id, clock())

    async def erased(uow: BenefitsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await handlers.on_member_erased(uow, e.member_id, clock())

    async def suspended(uow: BenefitsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await handlers.on_member_suspended(uow, e.member_id, clock())

    async def reactivated(uow: BenefitsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await handlers.on_member_reactivated(uow, e.member_id)

    async def profile_changed(uow: BenefitsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await handlers.on_profile_changed(uow, e.member_id, e.birthday_month, e.birthday_day)

    members.on(identity_events.MemberMerged, merged)
    members.on(identity_events.MemberUnmerged, unmerged)
    members.on(identity_events.MemberErased, erased)
    members.on(identity_events.MemberSuspended, suspended)
    members.on(identity_events.MemberReactivated, reactivated)
    members.on(identity_events.ProfileChanged, profile_changed)
    return [tiers, members]


def jobs(context: ServiceContext) -> Sequence[Job]:
    settings = BenefitsSettings()
    redemptions = _redemptions(context)

    async def recover() -> None:
        await redemptions.recover(timedelta(seconds=settings.recovery_after_seconds))

    async def scheduled() -> None:
        await every(settings.recovery_interval_seconds, context.stopping, recover, "rewards")

    clock, uow = _clock(context), _uow_factory(context)

    async def birthdays() -> None:
        await handlers.run_birthday_gifts(uow, clock(), 500)

    async def daily() -> None:
        await every(settings.birthday_interval_seconds, context.stopping, birthdays, "birthdays")

    issuer = _issuer(context)

    async def issuances() -> None:
        await issuer.serve(settings.issuance_interval_seconds, context.stopping)

    return [scheduled, daily, issuances]


SPEC = ServiceSpec(
    name="benefits",
    access=ACCESS,
    service_names=(SERVICE,),
    add_servicers=add_servicers,
    migrations="loyalty_benefits:migrations",
    consumers=consumers,
    jobs=jobs,
)
