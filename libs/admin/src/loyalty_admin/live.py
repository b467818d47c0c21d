"""The running services as `loyalty-admin` reaches them: over gRPC, as the group's admin.

Where: each service's target from the usual settings (`LOYALTY_POINTS_TARGET`, or the host and
`LOYALTY_POINTS_PORT`...; under `make run`, `. .loyalty/env` first). As whom: a bearer token
given in `LOYALTY_ADMIN_TOKEN` (an admin client's token from the gateway), else one signed with
this host's service key (`LOYALTY_AUTH_SERVICE_KEY`, or the development key of the data folder),
else the caller headers a development suite trusts.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc, catalogue_pb2
from loyalty.engagement.v1 import challenges_pb2, challenges_pb2_grpc, engagement_service_pb2_grpc
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc, programme_pb2
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_kit.auth import AUTHORIZATION, ServiceCredentials
from loyalty_kit.caller import Caller
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings

ADMIN = Caller(unit="group", client_id="loyalty-admin", scopes=frozenset({"admin"}))
TOKEN_VARIABLE = "LOYALTY_ADMIN_TOKEN"


def admin_metadata(settings: Settings) -> tuple[tuple[str, str], ...]:
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if token:
        return ((AUTHORIZATION, f"Bearer {token}"),)
    return ServiceCredentials.from_settings("loyalty-admin", settings.data_dir).metadata(ADMIN)


def not_there(error: grpc.aio.AioRpcError) -> bool:
    """A read answered "nothing yet" (no programme, ladder or catalogue)."""
    return bool(error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND))


def explain(error: grpc.aio.AioRpcError) -> str:
    """A refusal in one line: its code, message and the fields it names."""
    text = f"{error.code().name}: {error.details()}"
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            named = "; ".join(f"{v.field}: {v.description}" for v in request.field_violations)
            if named and named not in text:
                text += f" ({named})"
    return text


@dataclass
class Live:
    """The programme the services hold now. `points` is the latest version published (it may
    be scheduled to start later); `points_in_force` the version in force now (0: none)."""

    points: programme_pb2.Programme | None = None
    points_in_force: int = 0
    tiers: tiers_pb.Ladder | None = None
    benefits: catalogue_pb2.Catalogue | None = None
    stock: dict[str, int] = field(default_factory=dict)
    # Every journey (None: not read); the file's are the ones with its keys.
    journeys: list[engagement_pb.Journey] | None = None
    challenges: list[challenges_pb2.Challenge] | None = None


Metadata = tuple[tuple[str, str], ...]
# The channels Services needs, by service name.
CHANNELS = ("points", "tiers", "benefits", "engagement")


class Services:
    """Stubs of the services that keep the programme, and the metadata every call carries:
    given by the caller (the console passes its own channels and the signed-in operator's
    credentials, so each service records the operator's change), else the admin's (see the
    module's docstring)."""

    def __init__(
        self,
        settings: Settings | None,
        channels: Mapping[str, grpc.aio.Channel],
        *,
        metadata: Metadata | None = None,
    ) -> None:
        if metadata is None:
            if settings is None:
                raise ValueError("Services needs the caller's metadata or the settings")
            metadata = admin_metadata(settings)
        self.metadata: Metadata = tuple(metadata)
        self.points = points_service_pb2_grpc.PointsServiceStub(channels["points"])
        self.tiers = tiers_service_pb2_grpc.TiersServiceStub(channels["tiers"])
        self.benefits = benefits_service_pb2_grpc.BenefitsServiceStub(channels["benefits"])
        self.engagement = engagement_service_pb2_grpc.EngagementServiceStub(channels["engagement"])
        self.challenges = challenges_pb2_grpc.ChallengeServiceStub(channels["engagement"])

    async def read(self, *, journeys: bool = True) -> Live:
        """What the services hold; without `journeys`, the engagement service is not asked
        (a file without journeys or challenges needs nothing of it)."""
        live = Live()
        if journeys:
            live.journeys = await self.journeys()
            live.challenges = await self.challenge_list()
        live.points, live.points_in_force = await self._latest_programme()
        try:
            ladder = await self.tiers.GetLadder(tiers_pb.GetLadderRequest(), metadata=self.metadata)
            live.tiers = ladder.ladder
        except grpc.aio.AioRpcError as error:
            if not not_there(error):
                raise
        try:
            found = await self.benefits.GetCatalogue(
                benefits_pb.GetCatalogueRequest(), metadata=self.metadata
            )
            live.benefits = found.catalogue
        except grpc.aio.AioRpcError as error:
            if not not_there(error):
                raise
        if live.benefits is not None:
            live.stock = await self.stock()
        return live

    async def _latest_programme(self) -> tuple[programme_pb2.Programme | None, int]:
        """The newest version (one published to start later is newer than the one in force),
        found by asking for the versions after the one in force until there is none."""
        latest: programme_pb2.Programme | None = None
        try:
            found = await self.points.GetProgramme(
                points_pb.GetProgrammeRequest(), metadata=self.metadata
            )
            latest = found.programme
        except grpc.aio.AioRpcError as error:
            if not not_there(error):
                raise
        in_force = latest.version if latest is not None else 0
        version = in_force
        while True:
            version += 1
            try:
                found = await self.points.GetProgramme(
                    points_pb.GetProgrammeRequest(version=version), metadata=self.metadata
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                return latest, in_force
            latest = found.programme

    async def _every(self, method: Any, request: Any, items: str) -> list[Any]:
        """Every item of a List RPC, page after page."""
        found: list[Any] = []
        while True:
            page = await method(request, metadata=self.metadata)
            found.extend(getattr(page, items))
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token

    async def journeys(self) -> list[engagement_pb.Journey]:
        request = engagement_pb.ListJourneysRequest(page_size=200)
        return await self._every(self.engagement.ListJourneys, request, "journeys")

    async def challenge_list(self) -> list[challenges_pb2.Challenge]:
        request = challenges_pb2.ListChallengesRequest(page_size=200)
        return await self._every(self.challenges.ListChallenges, request, "challenges")

    async def stock(self) -> dict[str, int]:
        request = benefits_pb.ListRewardsRequest(page_size=200)
        rewards = await self._every(self.benefits.ListRewards, request, "rewards")
        return {reward.code: reward.available for reward in rewards}


def calling(
    channels: Mapping[str, grpc.aio.Channel], metadata: Metadata | Sequence[tuple[str, str]]
) -> Services:
    """The services over channels the caller keeps open, called with the caller's metadata."""
    return Services(None, channels, metadata=tuple(metadata))


@asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[Services]:
    channels = {
        name: channel(settings.target_of(name), default_deadline=30.0, max_deadline=60.0)
        for name in CHANNELS
    }
    try:
        yield Services(settings, channels)
    finally:
        for ch in channels.values():
            await ch.close()
