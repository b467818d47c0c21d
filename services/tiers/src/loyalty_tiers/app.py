"""The tiers service as the kit runs it: its gRPC services, migrations, consumers and jobs."""

from __future__ import annotations

import grpc
from loyalty_kit.server import ServiceContext, ServiceSpec


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    """No RPCs yet: the service's contract lands with its own issue."""


SPEC = ServiceSpec(
    name="tiers",
    service_names=(),
    add_servicers=add_servicers,
    migrations="loyalty_tiers:migrations",
)
