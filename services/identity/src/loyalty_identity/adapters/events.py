"""The identity service's domain events as the protobuf contract (`loyalty.identity.v1`) the
outbox publishes: the one place that knows both."""

from __future__ import annotations

from functools import singledispatch

from google.protobuf.message import Message
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import events_pb2 as pb
from loyalty_kit.timestamps import timestamp as ts

from loyalty_identity.domain import events


@singledispatch
def to_message(event: object) -> Message:
    raise TypeError(f"no protobuf message for {type(event).__name__}")


@to_message.register
def _(e: events.MemberRegistered) -> Message:
    channel = channel_pb2.Channel.Value(e.channel) if e.channel else channel_pb2.CHANNEL_UNSPECIFIED
    return pb.MemberRegistered(
        member_id=e.member_id, unit=e.unit, channel=channel, registered_at=ts(e.registered_at)
    )


@to_message.register
def _(e: events.ConsentChanged) -> Message:
    return pb.ConsentChanged(
        member_id=e.member_id,
        purpose=f"CONSENT_PURPOSE_{e.purpose.name}",
        granted=e.granted,
        source=e.source,
        changed_at=ts(e.changed_at),
    )


@to_message.register
def _(e: events.ProfileChanged) -> Message:
    return pb.ProfileChanged(
        member_id=e.member_id,
        changed_fields=list(e.changed_fields),
        birthday_month=e.birthday.month if e.birthday else 0,
        birthday_day=e.birthday.day if e.birthday else 0,
        changed_at=ts(e.changed_at),
    )


@to_message.register
def _(e: events.MemberMerged) -> Message:
    return pb.MemberMerged(
        survivor_member_id=e.survivor_member_id,
        absorbed_member_id=e.absorbed_member_id,
        merged_at=ts(e.merged_at),
    )


@to_message.register
def _(e: events.MemberUnmerged) -> Message:
    return pb.MemberUnmerged(
        survivor_member_id=e.survivor_member_id,
        restored_member_id=e.restored_member_id,
        merged_at=ts(e.merged_at),
        unmerged_at=ts(e.unmerged_at),
    )


@to_message.register
def _(e: events.MemberSuspended) -> Message:
    return pb.MemberSuspended(member_id=e.member_id, suspended_at=ts(e.suspended_at))


@to_message.register
def _(e: events.MemberReactivated) -> Message:
    return pb.MemberReactivated(member_id=e.member_id, reactivated_at=ts(e.reactivated_at))


@to_message.register
def _(e: events.MemberErased) -> Message:
    return pb.MemberErased(member_id=e.member_id, erased_at=ts(e.erased_at))
