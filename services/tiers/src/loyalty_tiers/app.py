"""The tiers service as the kit runs it: its composition root (bootstrap.py), the servicer, the
events it learns from and its scheduled jobs (entrypoints/)."""

from __future__ import annotations

import grpc
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_kit.server import ServiceSpec

from loyalty_tiers.bootstrap import Tiers, bootstrap
from loyalty_tiers.entrypoints.access import ACCESS
from loyalty_tiers.entrypoints.consumers import consumers
from loyalty_tiers.entrypoints.jobs import jobs
from loyalty_tiers.entrypoints.servicer import SERVICE, TiersServicer


def add_servicers(server: grpc.aio.Server, app: Tiers) -> None:
    tiers_service_pb2_grpc.add_TiersServiceServicer_to_server(TiersServicer(app), server)


SPEC = ServiceSpec(
    name="tiers",
    access=ACCESS,
    service_names=(SERVICE,),
    bootstrap=bootstrap,
    add_servicers=add_servicers,
    migrations="loyalty_tiers:migrations",
    consumers=consumers,
    jobs=jobs,
)
