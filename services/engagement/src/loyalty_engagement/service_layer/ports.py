"""What the journeys' use cases need of the services that act (benefits, points, identity):
each call carries the step's idempotency key, so a step repeated after a crash between the
call and the commit is the same coupon, posting or change. A definite refusal is
`ActionRefused` (the step fails, recorded); any other failure (`ActionUnreachable`) leaves the
outcome unknown: the event is handled again later with the same keys."""

from __future__ import annotations

from typing import Any, Protocol

from loyalty_kit.errors import Unavailable


class ActionRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ActionUnreachable(Unavailable):
    """The outcome of a call is unknown (an internal error of the service): retried. A service
    that is down or a deadline passed is the transport's own error (`loyalty_kit.jobs.outage`),
    which the kit's consumers retry without counting a delivery."""


class Actions(Protocol):
    async def issue_coupon(
        self, member_id: str, template: str, unit: str, key: str, grant_key: str = ""
    ) -> str:
        """The coupon's code (with `grant_key`: the member's coupon under that grant, issued
        now or before, by a journey or by benefits itself)."""
        ...

    async def award_points(
        self, member_id: str, points: int, funding_unit: str, reason: str, key: str
    ) -> str:
        """The posting's ID."""
        ...

    async def change_tags(
        self, member_id: str, add: tuple[str, ...], remove: tuple[str, ...], key: str
    ) -> None: ...

    async def consents(self, member_id: str) -> frozenset[str]:
        """The purposes the member has granted now (contract names)."""
        ...

    async def withdraw_consent(self, member_id: str, purpose: str, key: str) -> None:
        """An unsubscribe: the member's consent for `purpose` withdrawn."""
        ...

    async def close(self) -> None: ...


class MessageChannel(Protocol):
    """Where a journey's message goes. The development sink keeps it in the engagement
    database (ListMessages); the webhook channel queues it for a unit's SMS, WeChat or e-mail
    provider (service_layer/channels.py)."""

    async def send(self, uow: Any, message: Any, entry_id: str, step: int) -> None: ...


_CHANNELS: dict[str, MessageChannel] = {}


def register_channel(name: str, channel: MessageChannel) -> None:
    _CHANNELS[name] = channel


def channel_of(name: str) -> MessageChannel:
    return _CHANNELS[name]
