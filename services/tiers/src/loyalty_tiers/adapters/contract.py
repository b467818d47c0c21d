"""The tiers service's domain events as the `loyalty.tiers.v1` protobuf contract (the one place
that knows both): the unit of work writes what this returns to the outbox."""

from __future__ import annotations

from collections.abc import Iterable

from loyalty.tiers.v1 import events_pb2
from loyalty_kit.timestamps import timestamp

from loyalty_tiers.domain.events import TierChanged


def tier_changed_message(event: TierChanged) -> events_pb2.TierChanged:
    message = events_pb2.TierChanged(
        member_id=event.member_id,
        from_tier=event.from_tier,
        to_tier=event.to_tier,
        reason=event.reason,
        effective_at=timestamp(event.effective_at),
    )
    if event.tier_year_end is not None:
        message.tier_year_end.CopyFrom(timestamp(event.tier_year_end))
    if event.grant_ends_at is not None:
        message.grant_end_time.CopyFrom(timestamp(event.grant_ends_at))
    return message


def messages(events: Iterable[TierChanged]) -> list[events_pb2.TierChanged]:
    return [tier_changed_message(e) for e in events]
