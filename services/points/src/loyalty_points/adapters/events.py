"""The points service's domain events as the protobuf contract (`loyalty.points.v1`) the
outbox publishes: the one place that knows both. The kit maps every field by name and type;
this table says only where the domain's words differ from the contract's."""

from __future__ import annotations

from google.protobuf.message import Message
from loyalty.points.v1 import events_pb2
from loyalty_kit.contract import EventContract, Rules

from loyalty_points.domain import events

CONTRACT = EventContract(
    events_pb2,
    {
        events.PointsEarned: Rules(
            renames={"spend": "qualifying_spend", "base_spend": "qualifying_spend_base"}
        ),
        events.PointsReversed: Rules(renames={"base_spend": "qualifying_spend_base"}),
    },
)


def to_message(event: events.Event) -> Message:
    return CONTRACT.message(event)
