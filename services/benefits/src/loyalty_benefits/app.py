"""The benefits service as the kit runs it: its composition root (bootstrap.py), the servicers
(benefits and coupons; coupon offers members claim), the events it learns from and its
background jobs (entrypoints/)."""

from __future__ import annotations

import grpc
from loyalty.benefits.v1 import benefits_service_pb2_grpc, coupon_offers_pb2_grpc
from loyalty_kit.server import ServiceSpec

from loyalty_benefits.bootstrap import Benefits, bootstrap
from loyalty_benefits.entrypoints import offer_servicer
from loyalty_benefits.entrypoints.access import ACCESS
from loyalty_benefits.entrypoints.consumers import consumers
from loyalty_benefits.entrypoints.jobs import jobs
from loyalty_benefits.entrypoints.servicer import SERVICE, BenefitsServicer


def add_servicers(server: grpc.aio.Server, app: Benefits) -> None:
    benefits_service_pb2_grpc.add_BenefitsServiceServicer_to_server(BenefitsServicer(app), server)
    coupon_offers_pb2_grpc.add_CouponOfferServiceServicer_to_server(
        offer_servicer.CouponOfferServicer(app), server
    )


SPEC = ServiceSpec(
    name="benefits",
    access=ACCESS,
    service_names=(SERVICE, offer_servicer.SERVICE),
    bootstrap=bootstrap,
    add_servicers=add_servicers,
    migrations="loyalty_benefits:migrations",
    consumers=consumers,
    jobs=jobs,
)
