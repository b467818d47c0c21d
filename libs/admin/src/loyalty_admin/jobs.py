"""Running a scheduled job by hand: the services' own Run* admin RPCs (the same work their
schedulers do, chunked, idempotent and safe to run again). None of them reports progress while
it runs, so a spinner shows it is under way and the counts it answers with are printed at the
end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf.message import Message
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings
from rich.console import Console

from loyalty_admin.live import admin_metadata

# A job may walk every member: far longer than an ordinary call's deadline.
JOB_DEADLINE_SECONDS = 3600.0


@dataclass(frozen=True)
class Job:
    service: str
    stub: type
    method: str
    request: type[Message]
    what: str


# The command line lists the same names: a test keeps them in step.
JOBS = {
    "expiry": Job(
        "points",
        points_service_pb2_grpc.PointsServiceStub,
        "RunExpiry",
        points_pb.RunExpiryRequest,
        "expire points past their expiry",
    ),
    "pending-activation": Job(
        "points",
        points_service_pb2_grpc.PointsServiceStub,
        "RunPendingActivation",
        points_pb.RunPendingActivationRequest,
        "make pending points whose period has passed available",
    ),
    "year-end": Job(
        "tiers",
        tiers_service_pb2_grpc.TiersServiceStub,
        "RunYearEnd",
        tiers_pb.RunYearEndRequest,
        "judge retention or downgrade of tier years that ended",
    ),
    "grant-expiry": Job(
        "tiers",
        tiers_service_pb2_grpc.TiersServiceStub,
        "RunGrantExpiry",
        tiers_pb.RunGrantExpiryRequest,
        "end tier grants and paid memberships whose time is up",
    ),
    "birthday-gifts": Job(
        "benefits",
        benefits_service_pb2_grpc.BenefitsServiceStub,
        "RunBirthdayGifts",
        benefits_pb.RunBirthdayGiftsRequest,
        "grant the tier's birthday coupon to members whose birthday it is",
    ),
}


def counts(response: Message) -> dict[str, Any]:
    return {field.name: getattr(response, field.name) for field in response.DESCRIPTOR.fields}


async def run_job(
    settings: Settings,
    name: str,
    *,
    as_of: datetime | None = None,
    chunk_size: int = 0,
    console: Console | None = None,
) -> dict[str, Any]:
    job = JOBS[name]
    request = job.request()
    fields = request.DESCRIPTOR.fields_by_name
    if as_of is not None:
        request.as_of.FromDatetime(as_of)  # type: ignore[attr-defined]
    if chunk_size and "chunk_size" in fields:
        request.chunk_size = chunk_size  # type: ignore[attr-defined]
    console = console or Console(stderr=True)
    async with channel(
        settings.target_of(job.service),
        default_deadline=JOB_DEADLINE_SECONDS,
        max_deadline=JOB_DEADLINE_SECONDS,
    ) as ch:
        call = getattr(job.stub(ch), job.method)
        with console.status(f"{name}: {job.service} service {job.method} ..."):
            response = await call(request, metadata=admin_metadata(settings))
    return counts(response)
