"""The gateway as the kit runs it: a gRPC server (its composite API, to come) and the HTTP
server in front of the other services."""

from __future__ import annotations

import grpc
from loyalty_kit.server import ServiceContext, ServiceSpec

from loyalty_gateway.http import http_job


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    """No gRPC methods yet: the composite API lands with the gateway issue."""


SPEC = ServiceSpec(
    name="gateway",
    service_names=(),
    add_servicers=add_servicers,
    uses_database=False,
    publishes_events=False,
    port=lambda settings: settings.gateway_grpc_port,
    jobs=lambda context: [http_job(context)],
)
