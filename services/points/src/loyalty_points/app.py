"""The points service as the kit runs it: the servicer, identity and tier events consumed,
and the scheduled jobs (pending activation, expiry)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import grpc
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty_kit.events import EventMeta
from loyalty_kit.inbox import EventConsumer
from loyalty_kit.jobs import every
from loyalty_kit.logs import get_logger
from loyalty_kit.server import Job, ServiceContext, ServiceSpec
from loyalty_kit.timestamps import moment
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_points.adapters.members import IdentityDirectory
from loyalty_points.adapters.programmes import ProgrammeCache
from loyalty_points.entrypoints.access import ACCESS
from loyalty_points.entrypoints.servicer import SERVICE, PointsServicer
from loyalty_points.service_layer import consumers as use_cases
from loyalty_points.service_layer import jobs as job_steps
from loyalty_points.service_layer.accounts import utc_now
from loyalty_points.service_layer.uow import PointsUnitOfWork

log = get_logger("loyalty.points")


class PointsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_POINTS_", extra="ignore")

    job_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often pending activation and expiry run."
    )


def _clock(context: ServiceContext) -> Any:
    return context.extras.get("clock", utc_now)


def _uow(context: ServiceContext) -> PointsUnitOfWork:
    assert context.sessions is not None
    programmes = context.extras.setdefault("programmes", ProgrammeCache())
    return PointsUnitOfWork(
        context.sessions, context.settings.event_namespace, programmes=programmes
    )


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    directory = context.extras.get("directory") or IdentityDirectory(context.settings)
    servicer = PointsServicer(context, directory, _clock(context))
    context.extras["servicer"] = servicer
    points_service_pb2_grpc.add_PointsServiceServicer_to_server(servicer, server)


def consumers(context: ServiceContext) -> Sequence[EventConsumer]:
    namespace = context.settings.event_namespace
    clock = _clock(context)
    members = EventConsumer(
        "points-members", "identity", lambda: _uow(context), namespace=namespace
    )

    async def merged(uow: PointsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await use_cases.on_member_merged(uow, e.survivor_member_id, e.absorbed_member_id, clock())

    async def unmerged(uow: PointsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await use_cases.on_member_unmerged(uow, e.survivor_member_id, e.restored_member_id, clock())

    def state(name: str) -> Any:
        async def handle(uow: PointsUnitOfWork, e: Any, _m: EventMeta) -> None:
            await use_cases.on_member_state(uow, e.member_id, name, clock())

        return handle

    members.on(identity_events.MemberMerged, merged)
    members.on(identity_events.MemberUnmerged, unmerged)
    members.on(identity_events.MemberSuspended, state("suspended"))
    members.on(identity_events.MemberReactivated, state("active"))

    async def erased(uow: PointsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await use_cases.on_member_erased(uow, e.member_id, clock())

    members.on(identity_events.MemberErased, erased)

    tiers = EventConsumer("points-tiers", "tiers", lambda: _uow(context), namespace=namespace)

    async def tier_changed(uow: PointsUnitOfWork, e: Any, _m: EventMeta) -> None:
        await use_cases.on_tier_changed(
            uow, e.member_id, e.to_tier, moment(e.effective_at, "effective_at"), clock()
        )

    tiers.on(tier_events.TierChanged, tier_changed)
    return [members, tiers]


async def _activate(uow: PointsUnitOfWork, as_of: datetime) -> job_steps.JobResult:
    return await job_steps.activate_pending_chunk(uow, as_of, 500, as_of)


async def _expire(uow: PointsUnitOfWork, as_of: datetime) -> job_steps.JobResult:
    return await job_steps.expire_chunk(uow, as_of, 500, as_of)


def jobs(context: ServiceContext) -> Sequence[Job]:
    interval = PointsSettings().job_interval_seconds
    clock = _clock(context)

    async def once() -> None:
        now = clock()
        activated = await job_steps.run_in_chunks(
            lambda: _uow(context), functools.partial(_activate, as_of=now)
        )
        expired = await job_steps.run_in_chunks(
            lambda: _uow(context), functools.partial(_expire, as_of=now)
        )
        if activated.items or expired.items:
            log.info(
                "scheduled jobs",
                activated_points=activated.points,
                expired_points=expired.points,
                expired_members=expired.members,
            )

    async def scheduled() -> None:
        await every(interval, context.stopping, once, "points-pending-and-expiry")

    return [scheduled]


SPEC = ServiceSpec(
    name="points",
    access=ACCESS,
    service_names=(SERVICE,),
    add_servicers=add_servicers,
    migrations="loyalty_points:migrations",
    consumers=consumers,
    jobs=jobs,
)
