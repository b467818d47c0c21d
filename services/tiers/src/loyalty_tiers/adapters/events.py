"""The tiers service's domain events as the protobuf contract (`loyalty.tiers.v1`) the outbox
publishes: the one place that knows both. The kit maps every field by name and type (a tier
year or grant end not given is left unset); this table says only where the names differ."""

from __future__ import annotations

from google.protobuf.message import Message
from loyalty.tiers.v1 import events_pb2
from loyalty_kit.contract import EventContract, Rules

from loyalty_tiers.domain import events

CONTRACT = EventContract(
    events_pb2,
    {events.TierChanged: Rules(renames={"grant_ends_at": "grant_end_time"})},
)


def to_message(event: events.TierChanged) -> Message:
    return CONTRACT.message(event)
