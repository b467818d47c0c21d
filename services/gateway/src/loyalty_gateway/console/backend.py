"""Calling the services as a signed-in operator: one function gives the gRPC metadata.

The console never hands a token to the browser. For each call it presents a short-lived
service token (`ServiceCredentials("console", ...)`, cached per caller until a minute before
it runs out) for a `Caller` with the operator's unit and the scopes of the operator's role
(`roles.scopes_of`). Without a signing key (trusted headers in development) the caller's
headers are sent instead, as the kit does.
"""

from __future__ import annotations

from typing import Any

import grpc
from loyalty_kit.auth import ServiceCredentials, SigningKey
from loyalty_kit.caller import Caller

from loyalty_gateway.console.operators import Operator
from loyalty_gateway.console.roles import scopes_of

CLIENT_ID = "console"
REASON_HEADER = "x-loyalty-reason-bin"  # the operator's reason, for RPCs without a reason field

Metadata = tuple[tuple[str, str | bytes], ...]


def console_credentials(signing: SigningKey | None, ttl_seconds: float) -> ServiceCredentials:
    return ServiceCredentials(CLIENT_ID, signing, ttl_seconds=ttl_seconds)


def operator_caller(operator: Operator, *, personal_data: bool = False) -> Caller:
    """The caller the console acts as for `operator`: the client `console`, the operator's
    unit and role's scopes, and the operator's id (a signed `op` claim the services' audit
    entries record)."""
    return Caller(
        unit=operator.unit,
        client_id=CLIENT_ID,
        scopes=scopes_of(operator.role, personal_data=personal_data),
        operator=operator.operator_id,
    )


def operator_metadata(
    credentials: ServiceCredentials,
    operator: Operator,
    *,
    personal_data: bool = False,
    reason: str = "",
) -> Metadata:
    """The metadata of a call made for a signed-in operator: a short service token with the
    role's scopes and unit, and the reason of an action when there is one."""
    items: list[tuple[str, str | bytes]] = list(
        credentials.metadata(operator_caller(operator, personal_data=personal_data))
    )
    if reason:
        items.append((REASON_HEADER, reason.encode()))
    return tuple(items)


def as_operator(
    credentials: ServiceCredentials | None,
    operator: Operator,
    *,
    personal_data: bool = False,
    reason: str = "",
) -> Metadata:
    """`operator_metadata`, or without credentials (fast tests) the caller's headers."""
    return operator_metadata(
        credentials or ServiceCredentials(CLIENT_ID, None),
        operator,
        personal_data=personal_data,
        reason=reason,
    )


def channel_of(backends: Any, service: str) -> grpc.aio.Channel:
    """The gateway's channel to `service` (identity, points, ...), shared by every page."""
    found: grpc.aio.Channel = backends.channels[service]
    return found
