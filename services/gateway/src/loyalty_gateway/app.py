"""The gateway as the kit runs it: the HTTP server in front of the other services (routes
from their contracts, tokens for API clients), its own small database (API clients, the
checkout log, answers of composite calls kept for retries), a gRPC server for the composite
flows, and the job settling checkouts cut short. Wired once per process (`bootstrap.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from loyalty.gateway.v1 import gateway_service_pb2_grpc, me_service_pb2_grpc
from loyalty_kit.server import ServiceSpec

from loyalty_gateway.adapters.audit_log import direct_writer
from loyalty_gateway.bootstrap import Gateway, bootstrap
from loyalty_gateway.entrypoints.access import ACCESS
from loyalty_gateway.entrypoints.cli import clients
from loyalty_gateway.entrypoints.consumers import consumers
from loyalty_gateway.entrypoints.me_servicer import MeServicer
from loyalty_gateway.entrypoints.operators_cli import operators
from loyalty_gateway.entrypoints.servicer import GatewayServicer
from loyalty_gateway.flows.me import ME
from loyalty_gateway.flows.service import GATEWAY
from loyalty_gateway.http.server import http_job


def checkout_recovery_job(gateway: Gateway) -> Callable[[], Awaitable[None]]:
    """Gives back checkouts cut short or left half given back (every replica runs it)."""

    async def run() -> None:
        every = gateway.config.checkout_recovery_seconds
        await gateway.flows.checkout.recover_forever(gateway.context.stopping, every)

    return run


def add_servicers(server: grpc.aio.Server, gateway: Gateway) -> None:
    servicer = GatewayServicer(gateway.flows)
    gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)
    me_service_pb2_grpc.add_MeServiceServicer_to_server(MeServicer(gateway.flows.me), server)


SPEC = ServiceSpec(
    name="gateway",
    access=ACCESS,
    service_names=(GATEWAY.full_name, ME.full_name),
    bootstrap=bootstrap,
    add_servicers=add_servicers,
    migrations="loyalty_gateway:migrations",
    publishes_events=False,
    consumers=consumers,
    audit_store=direct_writer,
    port=lambda settings: settings.gateway_grpc_port,
    jobs=lambda gateway: [http_job(gateway), checkout_recovery_job(gateway)],
    commands={"clients": clients, "operators": operators},
)


def admin_clients(argv: list[str]) -> int:
    """`loyalty-admin clients ...`: this command, found by `loyalty-admin` through the entry
    point `loyalty_admin.commands` (the admin library never imports the gateway)."""
    from loyalty_kit.server import main as run_service

    return run_service(SPEC, ["clients", *argv])


def admin_operators(argv: list[str]) -> int:
    """`loyalty-admin operators ...`: the console's operators, as `admin_clients`."""
    from loyalty_kit.server import main as run_service

    return run_service(SPEC, ["operators", *argv])
