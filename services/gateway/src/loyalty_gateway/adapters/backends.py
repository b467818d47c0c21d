"""The services behind the gateway: which contracts it exposes and a channel to each."""

from __future__ import annotations

import importlib

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from loyalty_kit.channels import channel_to
from loyalty_kit.settings import Settings

# backend -> the modules of its contract; every `google.api.http` rule in them becomes a route.
CONTRACTS: dict[str, tuple[str, ...]] = {
    "identity": (
        "loyalty.identity.v1.identity_service_pb2",
        "loyalty.identity.v1.member_import_pb2",
        "loyalty.identity.v1.order_import_pb2",
        "loyalty.identity.v1.member_code_pb2",
        "loyalty.identity.v1.member_sign_in_pb2",
        "loyalty.identity.v1.member_erasure_pb2",
    ),
    "points": ("loyalty.points.v1.points_service_pb2",),
    "tiers": ("loyalty.tiers.v1.tiers_service_pb2",),
    "benefits": (
        "loyalty.benefits.v1.benefits_service_pb2",
        "loyalty.benefits.v1.coupon_offers_pb2",
    ),
    "insights": (
        "loyalty.insights.v1.insights_service_pb2",
        "loyalty.insights.v1.segments_pb2",
    ),
    "engagement": (
        "loyalty.engagement.v1.engagement_service_pb2",
        "loyalty.engagement.v1.challenges_pb2",
        "loyalty.engagement.v1.transactional_pb2",
    ),
    # The composite flows and a member's own channel, served here.
    "gateway": ("loyalty.gateway.v1.gateway_service_pb2", "loyalty.gateway.v1.me_service_pb2"),
}
BACKENDS = ("identity", "points", "tiers", "benefits", "insights", "engagement")
# The backends the gateway is ready only with: the read side (insights) answers figures and
# engagement runs journeys, which no till waits for, so their outage leaves the gateway serving
# (`/healthz` still reports it).
SERVING_BACKENDS = ("identity", "points", "tiers", "benefits")


def exposed_services() -> dict[str, list[ServiceDescriptor]]:
    """backend -> its gRPC services."""
    found: dict[str, list[ServiceDescriptor]] = {}
    for backend, modules in CONTRACTS.items():
        found[backend] = [
            service
            for module in modules
            for service in importlib.import_module(module).DESCRIPTOR.services_by_name.values()
        ]
    return found


class Backends:
    """One channel to each service, for the gateway's routes and its composite flows."""

    def __init__(self, settings: Settings) -> None:
        self.channels: dict[str, grpc.aio.Channel] = {
            name: channel_to(settings, name) for name in BACKENDS
        }
        self.by_service = {
            service.full_name: backend
            for backend, services in exposed_services().items()
            for service in services
        }

    def channel_for(self, service: ServiceDescriptor) -> grpc.aio.Channel:
        return self.channels[self.by_service[service.full_name]]

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()
