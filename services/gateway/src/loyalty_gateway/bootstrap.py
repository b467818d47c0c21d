"""The gateway's composition root: everything one gateway process wires once, for its gRPC
servicer, its HTTP side and its recovery job alike. Settings are read here, once, and carried;
nothing below reads the environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from loyalty_kit.auth import AuthSettings, ServiceCredentials
from loyalty_kit.server import ServiceContext
from loyalty_kit.settings import Settings
from loyalty_kit.uow import UnitOfWork

from loyalty_gateway.adapters.audit_log import AuditLog
from loyalty_gateway.adapters.backends import Backends
from loyalty_gateway.adapters.keys import Keys
from loyalty_gateway.adapters.self_service import SelfService
from loyalty_gateway.adapters.services import Services
from loyalty_gateway.flows import Flows
from loyalty_gateway.flows.audit import AuditEntries
from loyalty_gateway.flows.checkout import CheckoutSaga
from loyalty_gateway.flows.export import ExportMemberData
from loyalty_gateway.flows.me import Me
from loyalty_gateway.flows.member360 import Member360, MemberActions
from loyalty_gateway.flows.overview import Overview
from loyalty_gateway.flows.purchase import RecordPurchase
from loyalty_gateway.flows.refund import RefundPurchase
from loyalty_gateway.settings import GatewaySettings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Gateway:
    context: ServiceContext  # the kit's: database, stopping event, command-line arguments
    settings: Settings  # the suite's (ports, host, peers' targets, data folder)
    config: GatewaySettings  # the gateway's own (`LOYALTY_GATEWAY_*`)
    keys: Keys
    backends: Backends  # a channel to each service, shared by the routes and the flows
    flows: Flows
    uow: Callable[[], UnitOfWork]  # the gateway's own database: API clients, checkout log
    credentials: ServiceCredentials  # the gateway on its own account (recovery, unsubscribe)
    member_actions: MemberActions  # the console's member pages: search, 360 (`.reads`), actions


def bootstrap(
    context: ServiceContext,
    config: GatewaySettings | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Gateway:
    config = config or GatewaySettings()
    keys = Keys.load(config, AuthSettings(), context.settings.data_dir)
    backends = Backends(context.settings)
    services = Services(backends)
    deadline = config.request_deadline_seconds
    # The recovery job gives back for the API client that checked out: the gateway signs.
    credentials = ServiceCredentials("gateway", keys.signing)
    export = ExportMemberData(services, deadline, clock)
    flows = Flows(
        overview=Overview(services, deadline),
        record_purchase=RecordPurchase(services, context.uow, deadline),
        checkout=CheckoutSaga(services, context.uow, deadline, credentials),
        refund=RefundPurchase(services, context.uow, deadline),
        export=export,
        audit=AuditEntries(AuditLog(context.uow)),
        me=Me(services, SelfService(backends), export, deadline),
    )
    member_actions = MemberActions(Member360(services, deadline))
    return Gateway(
        context,
        context.settings,
        config,
        keys,
        backends,
        flows,
        context.uow,
        credentials,
        member_actions,
    )
