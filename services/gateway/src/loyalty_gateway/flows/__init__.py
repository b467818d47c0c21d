"""The composite flows of `loyalty.gateway.v1`: one module each (overview, purchase, checkout,
refund, export, and `me`, a member's own channel), each calling one named helper per downstream
RPC (`adapters.services`, `adapters.self_service`).

`Flows` holds one of each for a gateway process. Each flow names the gateway method it answers
(`METHOD`, its descriptor; `Me` a method per method of MeService): `by_method()` is how the HTTP
routes find it; the gRPC servicers call each flow directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import MethodDescriptor

from loyalty_gateway.adapters.services import Metadata
from loyalty_gateway.flows.audit import AuditEntries
from loyalty_gateway.flows.checkout import CheckoutSaga
from loyalty_gateway.flows.export import ExportMemberData
from loyalty_gateway.flows.me import Me
from loyalty_gateway.flows.overview import Overview
from loyalty_gateway.flows.purchase import RecordPurchase
from loyalty_gateway.flows.refund import RefundPurchase

# A flow: the gateway method's request and the metadata passed on in, its response out.
Flow = Callable[[Any, Metadata], Awaitable[Any]]


@dataclass(frozen=True)
class Flows:
    overview: Overview
    record_purchase: RecordPurchase
    checkout: CheckoutSaga
    refund: RefundPurchase
    export: ExportMemberData
    audit: AuditEntries
    me: Me

    def by_method(self) -> dict[MethodDescriptor, Flow]:
        """Every method of the gateway's service and the flow that answers it."""
        flows: tuple[Any, ...] = (
            self.overview,
            self.record_purchase,
            self.checkout,
            self.refund,
            self.export,
            self.audit,
        )
        return {**{flow.METHOD: flow for flow in flows}, **self.me.by_method()}
