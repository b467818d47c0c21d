"""The points service's domain events as the protobuf contract (`loyalty.points.v1`) the
outbox publishes: the one place that knows both."""

from __future__ import annotations

from functools import singledispatch

from google.protobuf.message import Message
from loyalty.points.v1 import events_pb2 as pb
from loyalty_kit.money import money
from loyalty_kit.timestamps import timestamp as ts

from loyalty_points.domain import events


@singledispatch
def to_message(event: object) -> Message:
    raise TypeError(f"no protobuf message for {type(event).__name__}")


@to_message.register
def _(e: events.ProgrammePublished) -> Message:
    return pb.ProgrammePublished(
        version=e.version, units=list(e.units), effective_from=ts(e.effective_from)
    )


@to_message.register
def _(e: events.PointsEarned) -> Message:
    return pb.PointsEarned(
        member_id=e.member_id,
        posting_id=e.posting_id,
        unit=e.unit,
        order_id=e.order_id,
        qualifying_spend=money(e.spend.value, e.spend.currency),
        qualifying_spend_base=money(e.base_spend.value, e.base_spend.currency),
        points=e.points,
        pending=e.pending,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.PointsReversed) -> Message:
    return pb.PointsReversed(
        member_id=e.member_id,
        posting_id=e.posting_id,
        earn_posting_id=e.earn_posting_id,
        unit=e.unit,
        order_id=e.order_id,
        qualifying_spend_base=money(e.base_spend.value, e.base_spend.currency),
        points=e.points,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.PointsRedeemed) -> Message:
    return pb.PointsRedeemed(
        member_id=e.member_id,
        posting_id=e.posting_id,
        unit=e.unit,
        points=e.points,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.RedemptionCancelled) -> Message:
    return pb.RedemptionCancelled(
        member_id=e.member_id,
        posting_id=e.posting_id,
        redemption_posting_id=e.redemption_posting_id,
        points=e.points,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.PointsExpired) -> Message:
    return pb.PointsExpired(
        member_id=e.member_id,
        posting_id=e.posting_id,
        points=e.points,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.PendingPointsActivated) -> Message:
    return pb.PendingPointsActivated(
        member_id=e.member_id,
        posting_id=e.posting_id,
        points=e.points,
        activated_at=ts(e.activated_at),
    )


@to_message.register
def _(e: events.PointsAdjusted) -> Message:
    return pb.PointsAdjusted(
        member_id=e.member_id,
        posting_id=e.posting_id,
        unit=e.unit,
        points=e.points,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.PointsTransferred) -> Message:
    return pb.PointsTransferred(
        from_member_id=e.from_member_id,
        to_member_id=e.to_member_id,
        posting_id=e.posting_id,
        points=e.points,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.PartnerExchanged) -> Message:
    return pb.PartnerExchanged(
        member_id=e.member_id,
        posting_id=e.posting_id,
        partner=e.partner,
        points=e.points,
        partner_units=e.partner_units,
        occurred_at=ts(e.occurred_at),
    )


@to_message.register
def _(e: events.ReferralRewarded) -> Message:
    return pb.ReferralRewarded(
        referrer_member_id=e.referrer_member_id,
        referee_member_id=e.referee_member_id,
        referrer_points=e.referrer_points,
        referee_points=e.referee_points,
        occurred_at=ts(e.occurred_at),
    )
