"""The composite requests checked before any service is called: every problem at once, as
field violations (400 INVALID_ARGUMENT)."""

from __future__ import annotations

from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations
from loyalty_kit.idempotency import validate_request_id
from loyalty_kit.resources import unit_of
from loyalty_kit.validation import length_violation

from loyalty_gateway.flows.parts import requested


def _order(identity: member_pb2.Identity, order_id: str) -> Violations:
    """The problems of the member's identity and the order's id, which every order names."""
    problems = Violations()
    if not identity.type or not identity.value:
        problems.add("identity", "the member's identity: type and value")
    if too_long := length_violation(order_id, "order_id"):
        problems.items.append(too_long)
    return problems


def _request_id(problems: Violations, request_id: str) -> None:
    try:
        validate_request_id(request_id)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)


def check_purchase(request: pb.RecordPurchaseRequest) -> None:
    problems = _order(request.identity, request.order_id)
    if not request.lines:
        problems.add("lines", "at least one order line")
    _request_id(problems, request.request_id)
    try:
        unit_of(request.unit)
    except InvalidArgument:
        problems.items.append(FieldViolation("unit", "a business unit code such as 'hotel'"))
    problems.raise_if_any()


def check_checkout(request: pb.RedeemAtCheckoutRequest) -> None:
    problems = _order(request.identity, request.order_id)
    if request.points < 0:
        problems.add("points", "0 or more")
    if not requested(request):
        problems.add("points", "something to pay with: points, a coupon or a benefit")
    if request.coupon and not request.order_amount.amount:
        problems.add("order_amount", "required with a coupon: the order's amount before it")
    if request.coupon and ("/" in request.coupon or len(request.coupon) > 64):
        problems.add("coupon", "a coupon code (up to 64 characters, no '/')")
    _request_id(problems, request.request_id)
    problems.raise_if_any()


def check_refund(request: pb.RefundPurchaseRequest) -> None:
    problems = _order(request.identity, request.order_id)
    _request_id(problems, request.request_id)
    problems.raise_if_any()
