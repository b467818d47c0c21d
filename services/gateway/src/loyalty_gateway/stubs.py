"""The four services as the composite flows call them: one stub each over the shared channels."""

from __future__ import annotations

from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.identity.v1 import identity_service_pb2_grpc
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.tiers.v1 import tiers_service_pb2_grpc

from loyalty_gateway.backends import Backends


class Stubs:
    def __init__(self, backends: Backends) -> None:
        ch = backends.channels
        self.identity = identity_service_pb2_grpc.IdentityServiceStub(ch["identity"])
        self.points = points_service_pb2_grpc.PointsServiceStub(ch["points"])
        self.tiers = tiers_service_pb2_grpc.TiersServiceStub(ch["tiers"])
        self.benefits = benefits_service_pb2_grpc.BenefitsServiceStub(ch["benefits"])
