"""The benefits service's domain events as the protobuf contract (`loyalty.benefits.v1`) the
outbox publishes: the one place that knows both."""

from __future__ import annotations

from functools import singledispatch

from google.protobuf.message import Message
from loyalty.benefits.v1 import events_pb2 as pb
from loyalty_kit.timestamps import timestamp as ts

from loyalty_benefits.domain import events


@singledispatch
def to_message(event: object) -> Message:
    raise TypeError(f"no protobuf message for {type(event).__name__}")


@to_message.register
def _(e: events.BenefitConsumed) -> Message:
    return pb.BenefitConsumed(
        member_id=e.member_id,
        consumption_id=e.consumption_id,
        benefit_code=e.benefit_code,
        unit=e.unit,
        order_id=e.order_id,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.BenefitReleased) -> Message:
    return pb.BenefitReleased(
        member_id=e.member_id,
        consumption_id=e.consumption_id,
        benefit_code=e.benefit_code,
        unit=e.unit,
        reason=e.reason,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.CouponIssued) -> Message:
    return pb.CouponIssued(
        member_id=e.member_id,
        code=e.code,
        template_code=e.template_code,
        source=e.source,
        valid_until=ts(e.valid_until),
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.CouponRedeemed) -> Message:
    return pb.CouponRedeemed(
        member_id=e.member_id,
        code=e.code,
        template_code=e.template_code,
        unit=e.unit,
        order_id=e.order_id,
        discount=e.discount.message(),
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.CouponReleased) -> Message:
    message = pb.CouponReleased(
        member_id=e.member_id,
        code=e.code,
        template_code=e.template_code,
        unit=e.unit,
        order_id=e.order_id,
        reason=e.reason,
        occurred_at=ts(e.occurred_at),
    )
    if e.discount is not None:
        message.discount.CopyFrom(e.discount.message())
    return message


@to_message.register
def _(e: events.RewardRedeemed) -> Message:
    return pb.RewardRedeemed(
        member_id=e.member_id,
        redemption_id=e.redemption_id,
        reward_code=e.reward_code,
        unit=e.unit,
        points=e.points,
        points_posting_id=e.points_posting_id,
        coupon_code=e.coupon_code,
        occurred_at=ts(e.occurred_at),
    )
