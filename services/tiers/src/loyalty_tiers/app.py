"""The tiers service as the kit runs it: the servicer and the points events it learns from."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import grpc
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_kit.events import EventMeta
from loyalty_kit.inbox import EventConsumer
from loyalty_kit.jobs import every
from loyalty_kit.server import Job, ServiceContext, ServiceSpec
from loyalty_kit.timestamps import moment
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_tiers.domain.ladder import Totals
from loyalty_tiers.entrypoints.access import ACCESS
from loyalty_tiers.entrypoints.servicer import SERVICE, TiersServicer
from loyalty_tiers.service_layer.activity import record_activity
from loyalty_tiers.service_layer.clock import utc_now
from loyalty_tiers.service_layer.grants import run_grant_expiry
from loyalty_tiers.service_layer.identity_events import (
    on_member_erased,
    on_member_merged,
    on_member_unmerged,
)
from loyalty_tiers.service_layer.tier_year import run_year_end
from loyalty_tiers.service_layer.uow import TiersUnitOfWork


def _clock(context: ServiceContext) -> Any:
    return context.extras.get("clock", utc_now)


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    servicer = TiersServicer(context, _clock(context))
    tiers_service_pb2_grpc.add_TiersServiceServicer_to_server(servicer, server)


def consumers(context: ServiceContext) -> Sequence[EventConsumer]:
    assert context.sessions is not None
    sessions, namespace, clock = context.sessions, context.settings.event_namespace, _clock(context)
    activity = EventConsumer(
        "tiers-activity",
        "points",
        lambda: TiersUnitOfWork(sessions, namespace),
        namespace=namespace,
    )

    async def earned(uow: TiersUnitOfWork, e: Any, _m: EventMeta) -> None:
        spend = Decimal(e.qualifying_spend_base.amount or "0")
        await record_activity(
            uow,
            e.member_id,
            e.posting_id,
            moment(e.occurred_at, "occurred_at"),
            e.unit,
            Totals(spend, e.points, 1),
            clock(),
        )

    async def reversed_(uow: TiersUnitOfWork, e: Any, _m: EventMeta) -> None:
        spend = Decimal(e.qualifying_spend_base.amount or "0")
        await record_activity(
            uow,
            e.member_id,
            e.posting_id,
            moment(e.occurred_at, "occurred_at"),
            e.unit,
            Totals(-spend, -e.points, 0),
            clock(),
        )

    activity.on(points_events.PointsEarned, earned)
    activity.on(points_events.PointsReversed, reversed_)

    members = EventConsumer(
        "tiers-members",
        "identity",
        lambda: TiersUnitOfWork(sessions, namespace),
        namespace=namespace,
    )

    async def merged(uow: TiersUnitOfWork, e: Any, _m: EventMeta) -> None:
        await on_member_merged(uow, e.survivor_member_id, e.absorbed_member_id, clock())

    async def erased(uow: TiersUnitOfWork, e: Any, _m: EventMeta) -> None:
        await on_member_erased(uow, e.member_id, clock())

    async def unmerged(uow: TiersUnitOfWork, e: Any, _m: EventMeta) -> None:
        await on_member_unmerged(uow, e.survivor_member_id, e.restored_member_id, clock())

    members.on(identity_events.MemberMerged, merged)
    members.on(identity_events.MemberUnmerged, unmerged)
    members.on(identity_events.MemberErased, erased)
    return [activity, members]


class TiersSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_TIERS_", extra="ignore")

    job_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often ended tier years are judged and ended grants fall back.",
    )


def jobs(context: ServiceContext) -> Sequence[Job]:
    assert context.sessions is not None
    sessions, namespace, clock = context.sessions, context.settings.event_namespace, _clock(context)

    def uow() -> TiersUnitOfWork:
        return TiersUnitOfWork(sessions, namespace)

    async def once() -> None:
        await run_grant_expiry(uow, clock())
        await run_year_end(uow, clock(), 500)

    async def scheduled() -> None:
        await every(TiersSettings().job_interval_seconds, context.stopping, once, "tier-year-end")

    return [scheduled]


SPEC = ServiceSpec(
    name="tiers",
    access=ACCESS,
    service_names=(SERVICE,),
    add_servicers=add_servicers,
    migrations="loyalty_tiers:migrations",
    consumers=consumers,
    jobs=jobs,
)
