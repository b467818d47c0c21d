"""The points service as the kit runs it: its composition root (bootstrap.py), the servicer, the
events it learns from and its scheduled jobs (entrypoints/)."""

from __future__ import annotations

import grpc
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_kit.server import ServiceSpec

from loyalty_points.bootstrap import Points, bootstrap
from loyalty_points.entrypoints.access import ACCESS
from loyalty_points.entrypoints.consumers import consumers
from loyalty_points.entrypoints.jobs import jobs
from loyalty_points.entrypoints.servicer import SERVICE, PointsServicer


def add_servicers(server: grpc.aio.Server, app: Points) -> None:
    points_service_pb2_grpc.add_PointsServiceServicer_to_server(PointsServicer(app), server)


SPEC = ServiceSpec(
    name="points",
    access=ACCESS,
    service_names=(SERVICE,),
    bootstrap=bootstrap,
    add_servicers=add_servicers,
    migrations="loyalty_points:migrations",
    consumers=consumers,
    jobs=jobs,
)
