"""The events the gateway keeps: every service's audit entries, into its audit log (the kit's
inbox drops redeliveries; the insert ignores an entry it has already)."""

from __future__ import annotations

from typing import Any

from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded
from loyalty_kit.audit import AUDIT_STREAM
from loyalty_kit.inbox import Batched, EventConsumer, Subscription, consumers_of

from loyalty_gateway.adapters import audit_log
from loyalty_gateway.bootstrap import Gateway


async def _recorded(_gateway: Gateway, uow: Any, entry: AuditEntryRecorded) -> None:
    await audit_log.record(uow, entry)


TABLE: list[Subscription[Gateway]] = [
    Subscription(
        "gateway-audit-log",
        AUDIT_STREAM,
        {AuditEntryRecorded: _recorded},
        batched=Batched(size=200),
    ),
]


def consumers(gateway: Gateway) -> list[EventConsumer]:
    return consumers_of(TABLE, gateway, gateway.uow, gateway.settings.event_namespace)
