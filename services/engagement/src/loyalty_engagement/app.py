"""The engagement service as the kit runs it: its composition root (bootstrap.py), the servicers
(journeys; challenges, badges and leaderboards; transactional messages), the events that
trigger them, and the background work: the journeys' timer, the webhook delivery loop and the
leaderboards' close (entrypoints/)."""

from __future__ import annotations

import grpc
from loyalty.engagement.v1 import (
    challenges_pb2_grpc,
    engagement_service_pb2_grpc,
    transactional_pb2_grpc,
)
from loyalty_kit.server import ServiceSpec

from loyalty_engagement.bootstrap import Engagement, bootstrap
from loyalty_engagement.entrypoints.access import ACCESS
from loyalty_engagement.entrypoints.challenges import SERVICE as CHALLENGES
from loyalty_engagement.entrypoints.challenges import ChallengeServicer
from loyalty_engagement.entrypoints.consumers import consumers
from loyalty_engagement.entrypoints.jobs import jobs
from loyalty_engagement.entrypoints.servicer import SERVICE, EngagementServicer
from loyalty_engagement.entrypoints.transactional import SERVICE as TRANSACTIONAL
from loyalty_engagement.entrypoints.transactional import TransactionalServicer


def add_servicers(server: grpc.aio.Server, app: Engagement) -> None:
    engagement_service_pb2_grpc.add_EngagementServiceServicer_to_server(
        EngagementServicer(app), server
    )
    challenges_pb2_grpc.add_ChallengeServiceServicer_to_server(ChallengeServicer(app), server)
    transactional_pb2_grpc.add_TransactionalMessageServiceServicer_to_server(
        TransactionalServicer(app), server
    )


SPEC = ServiceSpec(
    name="engagement",
    access=ACCESS,
    service_names=(SERVICE, CHALLENGES, TRANSACTIONAL),
    bootstrap=bootstrap,
    add_servicers=add_servicers,
    migrations="loyalty_engagement:migrations",
    consumers=consumers,
    jobs=jobs,
)
