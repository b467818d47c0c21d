"""The insights service as the kit runs it: its composition root (bootstrap.py), the servicer,
the events it keeps facts of (entrypoints/) and its job, the lifetime value fitter."""

from __future__ import annotations

import grpc
from loyalty.insights.v1 import insights_service_pb2_grpc, segments_pb2_grpc
from loyalty_kit.server import ServiceSpec

from loyalty_insights.bootstrap import Insights, bootstrap
from loyalty_insights.entrypoints.access import ACCESS
from loyalty_insights.entrypoints.consumers import consumers
from loyalty_insights.entrypoints.jobs import jobs
from loyalty_insights.entrypoints.segments import SERVICE as SEGMENTS
from loyalty_insights.entrypoints.segments import SegmentServicer
from loyalty_insights.entrypoints.servicer import SERVICE, InsightsServicer


def add_servicers(server: grpc.aio.Server, app: Insights) -> None:
    insights_service_pb2_grpc.add_InsightsServiceServicer_to_server(InsightsServicer(app), server)
    segments_pb2_grpc.add_SegmentServiceServicer_to_server(SegmentServicer(app), server)


SPEC = ServiceSpec(
    name="insights",
    access=ACCESS,
    service_names=(SERVICE, SEGMENTS),
    bootstrap=bootstrap,
    add_servicers=add_servicers,
    migrations="loyalty_insights:migrations",
    consumers=consumers,
    jobs=jobs,
)
