"""The gateway as the kit runs it: the HTTP server in front of the other services (routes
from their contracts, tokens for API clients), its own small database of API clients, and a
gRPC server (for its composite methods, to come)."""

from __future__ import annotations

import grpc
from loyalty_kit.server import ServiceContext, ServiceSpec

from loyalty_gateway.cli import clients
from loyalty_gateway.http import http_job


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    """No gRPC methods yet: the composite API lands with its part of the gateway issue."""


SPEC = ServiceSpec(
    name="gateway",
    service_names=(),
    add_servicers=add_servicers,
    migrations="loyalty_gateway:migrations",
    publishes_events=False,
    port=lambda settings: settings.gateway_grpc_port,
    jobs=lambda context: [http_job(context)],
    commands={"clients": clients},
)
