"""The harness's own calls, over gRPC to the services as the group's admin (a bearer token
signed with the run's development key): the members of the load and their points before it,
engagement's awards on the load's purchases, their postings after it, health, and whether the
suite has settled (outboxes published, consumers caught up, no checkout left to settle).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loyalty.common.v1 import channel_pb2
from loyalty.engagement.v1 import challenges_pb2, challenges_pb2_grpc, engagement_service_pb2_grpc
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller
from loyalty_kit.channels import channel
from loyalty_kit.db import asyncpg_params
from loyalty_kit.events import stream_name
from loyalty_kit.settings import Settings

from loyalty_devstack.cli import SERVICES
from loyalty_devstack.reliability.load import Member
from loyalty_devstack.reliability.outcomes import Posting

ADMIN = Caller(unit="group", client_id="reliability", scopes=frozenset({"admin"}))
STARTING_POINTS = 1_000_000  # enough for every checkout and redemption of a run
CALL_SECONDS = 15.0
PAGE = 500
# Engagement's awards on the load's path (`Admin.engagement_awards`): a point for each purchase
# at the mall (a journey's step), and 10 once a month for a member's third purchase (a
# repeatable challenge). Each posting carries its reason: counted per member after the run.
JOURNEY_REASON = "reliability run: a point a purchase"
CHALLENGE_NAME = "reliability run: three purchases"
CHALLENGE_TARGET = 3
CHALLENGE_POINTS = 10
CHALLENGE_TIME_ZONE = "Asia/Shanghai"


class Admin:
    def __init__(self, settings: Settings, targets: dict[str, str]) -> None:
        self.settings = settings
        self.targets = targets
        self.credentials = ServiceCredentials.from_settings("reliability", settings.data_dir)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self.credentials.metadata(ADMIN)

    async def members(self, count: int) -> list[Member]:
        """`count` new members, each with a phone and STARTING_POINTS (an adjustment)."""
        made: list[Member] = []
        async with (
            channel(self.targets["identity"]) as identity_channel,
            channel(self.targets["points"]) as points_channel,
        ):
            identity = identity_service_pb2_grpc.IdentityServiceStub(identity_channel)
            points = points_service_pb2_grpc.PointsServiceStub(points_channel)
            for _ in range(count):
                phone = f"136{uuid.uuid4().int % 10**8:08d}"
                registered = await identity.RegisterMember(
                    identity_pb.RegisterMemberRequest(
                        request_id=uuid.uuid4().hex,
                        unit="mall",
                        channel=channel_pb2.CHANNEL_POS,
                        identities=[member_pb2.Identity(type="phone", value=phone)],
                    ),
                    metadata=self.metadata,
                    timeout=CALL_SECONDS,
                )
                name = registered.member.name
                await points.AdjustPoints(
                    points_pb.AdjustPointsRequest(
                        member=name,
                        request_id=uuid.uuid4().hex,
                        unit="mall",
                        points=STARTING_POINTS,
                        reason="reliability run: points to spend",
                    ),
                    metadata=self.metadata,
                    timeout=CALL_SECONDS,
                )
                made.append(Member(name.removeprefix("members/"), phone))
        return made

    async def engagement_awards(self) -> None:
        """Engagement on the load's path: a journey awarding a point on each purchase at the
        mall and a repeatable challenge paying a member's third purchase of each month."""
        async with channel(self.targets["engagement"]) as engagement_channel:
            journeys = engagement_service_pb2_grpc.EngagementServiceStub(engagement_channel)
            await journeys.CreateJourney(
                engagement_pb.CreateJourneyRequest(
                    request_id=uuid.uuid4().hex,
                    journey=engagement_pb.Journey(
                        display_name="Reliability: a point a purchase",
                        state=engagement_pb.JOURNEY_STATE_ACTIVE,
                        trigger=engagement_pb.Trigger(
                            kind=engagement_pb.TRIGGER_KIND_PURCHASE, unit="mall"
                        ),
                        steps=[
                            engagement_pb.Step(
                                award_points=engagement_pb.AwardPoints(
                                    points=1, funding_unit="mall", reason=JOURNEY_REASON
                                )
                            )
                        ],
                    ),
                ),
                metadata=self.metadata,
                timeout=CALL_SECONDS,
            )
            challenges = challenges_pb2_grpc.ChallengeServiceStub(engagement_channel)
            await challenges.CreateChallenge(
                challenges_pb2.CreateChallengeRequest(
                    request_id=uuid.uuid4().hex,
                    challenge=challenges_pb2.Challenge(
                        display_name=CHALLENGE_NAME,
                        goal=challenges_pb2.Goal(
                            kind=challenges_pb2.GOAL_KIND_PURCHASES,
                            target=CHALLENGE_TARGET,
                            unit="mall",
                        ),
                        window=challenges_pb2.Window(kind=challenges_pb2.WINDOW_KIND_MONTH),
                        reward=challenges_pb2.ChallengeReward(
                            points=CHALLENGE_POINTS, funding_unit="group"
                        ),
                        repeatable=True,
                        time_zone=CHALLENGE_TIME_ZONE,
                    ),
                ),
                metadata=self.metadata,
                timeout=CALL_SECONDS,
            )

    async def postings(self, members: Sequence[Member]) -> list[Posting]:
        """Every posting of these members (ListPostings, page by page)."""
        found: list[Posting] = []
        async with channel(self.targets["points"]) as points_channel:
            points = points_service_pb2_grpc.PointsServiceStub(points_channel)
            for member in members:
                token = ""
                while True:
                    page = await points.ListPostings(
                        points_pb.ListPostingsRequest(
                            member=f"members/{member.member_id}", page_size=PAGE, page_token=token
                        ),
                        metadata=self.metadata,
                        timeout=CALL_SECONDS,
                    )
                    found += [
                        Posting(
                            p.posting_id,
                            points_pb.PostingKind.Name(p.kind).removeprefix("POSTING_KIND_"),
                            p.order_id,
                            p.related_posting_id,
                            member.member_id,
                            p.reason,
                        )
                        for p in page.postings
                    ]
                    if not (token := page.next_page_token):
                        break
        return found


async def health(target: str) -> str:
    """SERVING, NOT_SERVING, ... of a service; DOWN when it does not answer."""
    async with channel(target) as health_channel:
        try:
            answer = await health_pb2_grpc.HealthStub(health_channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        except Exception:
            return "DOWN"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


async def unpublished(settings: Settings) -> dict[str, int]:
    """Outbox rows not yet published, per service."""
    counts: dict[str, int] = {}
    for service in SERVICES:
        url = settings.service_database_url(service).set(drivername="postgresql+asyncpg")
        conn = await asyncpg.connect(**asyncpg_params(url), timeout=5)
        try:
            counts[service] = await conn.fetchval(
                "SELECT count(*) FROM kit_outbox WHERE published_at IS NULL"
            )
        finally:
            await conn.close()
    return counts


async def unsettled_checkouts(settings: Settings) -> int:
    """Checkouts still running or being given back (the gateway's recovery settles them)."""
    url = settings.service_database_url("gateway").set(drivername="postgresql+asyncpg")
    conn = await asyncpg.connect(**asyncpg_params(url), timeout=5)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM checkouts WHERE state IN ('running', 'undoing')"
        )
    finally:
        await conn.close()
    return count


async def consumer_lag(settings: Settings) -> dict[str, int]:
    """Messages not yet delivered or not yet acknowledged, per durable consumer of the run's
    streams."""
    client = await nats.connect(settings.nats_url, connect_timeout=5, max_reconnect_attempts=0)
    lag: dict[str, int] = {}
    try:
        js = client.jetstream()
        for service in SERVICES:
            stream = stream_name(settings.event_namespace, service)
            try:
                consumers = await js.consumers_info(stream)
            except nats.js.errors.NotFoundError:
                continue
            for info in consumers:
                lag[f"{stream}/{info.name}"] = info.num_pending + info.num_ack_pending
    finally:
        await client.close()
    return lag


async def settled(settings: Settings) -> tuple[bool, dict[str, object]]:
    """Whether everything written has gone where it goes, and what is left."""
    outbox = await unpublished(settings)
    lag = await consumer_lag(settings)
    checkouts = await unsettled_checkouts(settings)
    left = {
        "outbox": {k: v for k, v in outbox.items() if v},
        "consumers": {k: v for k, v in lag.items() if v},
        "checkouts": checkouts,
    }
    return not left["outbox"] and not left["consumers"] and not checkouts, left


async def settle(settings: Settings, timeout: float) -> tuple[float, dict[str, object]]:
    """Wait until settled (raises TimeoutError with what is left); the seconds it took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    left: dict[str, object] = {}
    while loop.time() - began < timeout:
        try:
            done, left = await settled(settings)
        except (OSError, asyncpg.PostgresError, nats.errors.Error) as error:
            done, left = False, {"error": f"{type(error).__name__}: {error}"}
        if done:
            return round(loop.time() - began, 1), left
        await asyncio.sleep(0.5)
    raise TimeoutError(f"not settled after {timeout:.0f} s: {left}")
