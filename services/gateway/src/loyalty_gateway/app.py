"""The gateway as the kit runs it: the HTTP server in front of the other services (routes
from their contracts, tokens for API clients), its own small database (API clients, the
checkout log, answers of composite calls kept for retries), a gRPC server for the composite
flows, and the job settling checkouts cut short. Wired once per process (`bootstrap.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from loyalty.gateway.v1 import gateway_service_pb2_grpc
from loyalty_kit.server import ServiceContext, ServiceSpec

from loyalty_gateway.bootstrap import gateway_of
from loyalty_gateway.entrypoints.access import ACCESS
from loyalty_gateway.entrypoints.cli import clients
from loyalty_gateway.entrypoints.servicer import GatewayServicer
from loyalty_gateway.flows.service import GATEWAY
from loyalty_gateway.http.server import http_job


def checkout_recovery_job(context: ServiceContext) -> Callable[[], Awaitable[None]]:
    """Gives back checkouts cut short or left half given back (every replica runs it)."""

    async def run() -> None:
        gateway = gateway_of(context)
        every = gateway.config.checkout_recovery_seconds
        await gateway.flows.checkout.recover_forever(context.stopping, every)

    return run


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    servicer = GatewayServicer(gateway_of(context).flows)
    gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)


SPEC = ServiceSpec(
    name="gateway",
    access=ACCESS,
    service_names=(GATEWAY.full_name,),
    add_servicers=add_servicers,
    migrations="loyalty_gateway:migrations",
    publishes_events=False,
    port=lambda settings: settings.gateway_grpc_port,
    jobs=lambda context: [http_job(context), checkout_recovery_job(context)],
    commands={"clients": clients},
)
