"""The gateway's flows without a server: every method of its services has one flow, found by
its descriptor from the HTTP routes; a checkout's parts are taken and given back in order."""

from __future__ import annotations

import dataclasses
import typing

from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_gateway.adapters.backends import exposed_services
from loyalty_gateway.adapters.checkout_log import Attempt
from loyalty_gateway.flows import Flows
from loyalty_gateway.flows.me import ME, Me
from loyalty_gateway.flows.parts import PARTS, requested
from loyalty_gateway.flows.service import GATEWAY
from loyalty_gateway.http.transcoding import routes_of


def answered_methods() -> list[typing.Any]:
    """The method each flow answers, and each the member's own channel answers."""
    flows = typing.get_type_hints(Flows)
    own = Me(None, None, None, 0.0)  # type: ignore[arg-type]  # (its methods, not its calls)
    composite = [flows[f.name].METHOD for f in dataclasses.fields(Flows) if f.name != "me"]
    return [*composite, *own.by_method()]


def test_every_method_of_the_gateway_has_one_flow() -> None:
    answered = answered_methods()
    served = [*GATEWAY.methods, *ME.methods]
    assert sorted(m.full_name for m in answered) == sorted(m.full_name for m in served)
    assert set(answered) == set(served)  # the descriptors themselves


def test_the_gateway_routes_find_their_flow_by_descriptor() -> None:
    routes = routes_of(exposed_services()["gateway"])
    assert routes
    methods = set(answered_methods())
    assert all(route.method in methods for route in routes)
    others = routes_of(
        s for name, found in exposed_services().items() if name != "gateway" for s in found
    )
    assert not any(route.method in methods for route in others)


def test_parts_are_taken_coupon_benefit_points_and_given_back_in_reverse() -> None:
    request = pb.RedeemAtCheckoutRequest(points=10, benefit="drink", coupon="C1")
    assert [part.name for part in requested(request)] == ["coupon", "benefit", "points"]
    assert [part.name for part in requested(pb.RedeemAtCheckoutRequest(points=5))] == ["points"]
    assert requested(pb.RedeemAtCheckoutRequest(points=0)) == []


def test_what_a_completed_checkout_took_is_what_each_part_gives_back() -> None:
    checkout = pb.RedeemAtCheckoutResponse()
    checkout.points_posting.posting_id = "p1"
    checkout.coupon.name = "members/m/coupons/C1"
    paid = {part.name: part.paid(checkout) for part in PARTS}
    assert paid["benefit"] is None  # not used at this checkout
    assert paid["points"] == points_pb.RedeemPointsResponse(posting=checkout.points_posting)
    assert paid["coupon"] == benefits_pb.RedeemCouponResponse(coupon=checkout.coupon)


def test_an_attempts_steps_have_request_ids_of_their_own() -> None:
    attempt = Attempt("c1", "hotel-1", "hotel", "o1", "m1", 2, pb.RedeemAtCheckoutRequest())
    assert attempt.step_id("points") == "co.c1.2:points"
    assert attempt.step_id("points", undo=True) == "co.c1.2:points-undo"
    assert attempt.member == "members/m1"
