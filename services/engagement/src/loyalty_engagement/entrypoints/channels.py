"""The channels' messages: proto <-> what the use cases take and give (the servicer's webhook,
delivery and unsubscribe methods stay thin)."""

from __future__ import annotations

from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.timestamps import timestamp

from loyalty_engagement.adapters.channels import (
    DEAD,
    DELIVERED,
    PENDING,
    StoredDelivery,
    StoredEndpoint,
)
from loyalty_engagement.service_layer.transactional import TRANSACTIONAL_SMS

DELIVERIES = "deliveries/"
_STATES = {
    PENDING: pb.DELIVERY_STATE_PENDING,
    DELIVERED: pb.DELIVERY_STATE_DELIVERED,
    DEAD: pb.DELIVERY_STATE_DEAD,
}
_STATE_NAMES = {v: k for k, v in _STATES.items()}


def purpose_of(value: int, field: str) -> str:
    if value == member_pb2.CONSENT_PURPOSE_UNSPECIFIED:
        raise InvalidArgument.of([FieldViolation(field, "a consent purpose is required")])
    try:
        return member_pb2.ConsentPurpose.Name(value)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidArgument.of([FieldViolation(field, f"unknown purpose {value}")]) from None


def state_of(value: int) -> str:
    """A delivery state filter ("": any)."""
    if value == pb.DELIVERY_STATE_UNSPECIFIED:
        return ""
    if value not in _STATE_NAMES:
        raise InvalidArgument.of([FieldViolation("state", f"unknown delivery state {value}")])
    return _STATE_NAMES[value]  # type: ignore[index]


def delivery_id_of(name: str) -> str:
    message_id = name.removeprefix(DELIVERIES)
    if not name.startswith(DELIVERIES) or not message_id or "/" in message_id:
        raise InvalidArgument.of([FieldViolation("name", "deliveries/{message_id}")])
    return message_id


def endpoint_message(endpoint: StoredEndpoint) -> pb.WebhookEndpoint:
    if endpoint.purpose == TRANSACTIONAL_SMS:
        return pb.WebhookEndpoint(
            unit=endpoint.unit,
            url=endpoint.url,
            update_time=timestamp(endpoint.updated_at),
            transactional=True,
        )
    return pb.WebhookEndpoint(
        unit=endpoint.unit,
        purpose=member_pb2.ConsentPurpose.Value(endpoint.purpose),
        url=endpoint.url,
        update_time=timestamp(endpoint.updated_at),
    )


def delivery_message(delivery: StoredDelivery) -> pb.Delivery:
    message = pb.Delivery(
        name=f"{DELIVERIES}{delivery.message_id}",
        message=f"messages/{delivery.message_id}",
        unit=delivery.unit,
        url=delivery.url,
        state=_STATES[delivery.state],
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        create_time=timestamp(delivery.created_at),
    )
    if delivery.state == PENDING:
        message.next_attempt_time.CopyFrom(timestamp(delivery.next_attempt_at))
    return message
