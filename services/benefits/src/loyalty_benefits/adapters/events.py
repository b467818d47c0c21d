"""The benefits service's domain events as the protobuf contract (`loyalty.benefits.v1`) the
outbox publishes: the one place that knows both. The kit maps every field by name and type
(a discount not given is left unset); each event is named and shaped as its message."""

from __future__ import annotations

from google.protobuf.message import Message
from loyalty.benefits.v1 import events_pb2
from loyalty_kit.contract import EventContract

from loyalty_benefits.domain import events

CONTRACT = EventContract(events_pb2)


def to_message(event: events.Event) -> Message:
    return CONTRACT.message(event)
