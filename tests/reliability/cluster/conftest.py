"""Identity, points and tiers on a 3-node NATS JetStream cluster on loopback
(loyalty_devstack.cluster), every stream at 3 replicas.

The services are copies of the suite with databases (`<run>_c_<service>`) and an event namespace
of their own; LOYALTY_NATS_URL names all three nodes. Streams are kept small: with R3 each node
stores every stream, and the store of a test machine need not hold production's limits.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest_asyncio
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_devstack.cluster import NatsCluster
from loyalty_devstack.demo import huayue_ladder, huayue_programme
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit import events
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tests.points.conftest import ADMIN, Points
from tests.support.clients import As

REPLICAS = 3


@dataclass
class ClusterSuite:
    """The services on the cluster, their settings, and a JetStream client of the tests'."""

    cluster: NatsCluster
    settings: Settings
    services: dict[str, RunningService]
    channels: dict[str, grpc.aio.Channel]
    nats: NATS

    @property
    def js(self) -> JetStreamContext:
        return self.nats.jetstream(timeout=5)

    @property
    def points(self) -> Points:
        return Points(self.channels["points"], self.channels["identity"], self.services["points"])

    def tiers(self) -> Any:
        return As(tiers_service_pb2_grpc.TiersServiceStub, self.channels["tiers"], ADMIN)

    def stream(self, service: str) -> str:
        return events.stream_name(self.settings.event_namespace, service)

    async def database(self, service: str) -> asyncpg.Connection:
        """A connection to a service's own database, for what no RPC shows (outbox, inbox)."""
        connection: asyncpg.Connection = await asyncpg.connect(
            **asyncpg_params(self.settings.service_database_url(service))
        )
        return connection


@pytest_asyncio.fixture(loop_scope="session", scope="package")
async def cluster() -> AsyncIterator[NatsCluster]:
    with tempfile.TemporaryDirectory(prefix="loyalty-nats-cluster-") as folder:
        started = NatsCluster(Path(folder), size=REPLICAS)
        await started.start()
        try:
            yield started
        finally:
            started.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="package")
async def suite(
    make_settings: Callable[..., Settings], cluster: NatsCluster, run_id: str
) -> AsyncIterator[ClusterSuite]:
    os.environ["LOYALTY_POINTS_JOB_INTERVAL_SECONDS"] = "3600"
    os.environ["LOYALTY_TIERS_JOB_INTERVAL_SECONDS"] = "3600"
    from loyalty_identity.app import SPEC as IDENTITY
    from loyalty_points.app import SPEC as POINTS
    from loyalty_tiers.app import SPEC as TIERS

    settings = make_settings(
        nats_url=cluster.url,
        event_stream_replicas=REPLICAS,
        event_stream_max_bytes=64 * 1024**2,
        dead_letter_max_bytes=16 * 1024**2,
        database_prefix=f"{run_id}_c_",
        event_namespace=f"{run_id}c",
    )
    runner = ServiceRunner(settings)
    services: dict[str, RunningService] = {}
    client = await events.connect(cluster.url, "reliability-tests")
    try:
        services["identity"] = await runner.start(IDENTITY)
        services["points"] = await runner.start(
            POINTS, settings.model_copy(update={"identity_target": services["identity"].target})
        )
        services["tiers"] = await runner.start(TIERS)
        channels = {
            name: grpc.aio.insecure_channel(service.target) for name, service in services.items()
        }
        made = ClusterSuite(cluster, settings, services, channels, client)
        await made.points.as_(ADMIN).UpdateProgramme(
            points_pb.UpdateProgrammeRequest(
                programme=huayue_programme(), reason="cluster", request_id="cluster-programme"
            )
        )
        await made.tiers().UpdateLadder(
            tiers_pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id="cluster-ladder")
        )
        yield made
        for channel in channels.values():
            await channel.close()
    finally:
        await runner.stop_all()
        await client.close()
