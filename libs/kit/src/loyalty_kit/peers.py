"""Clients of the other services of the suite, made one way: a kit channel to the peer (deadline
on every call, retries on UNAVAILABLE, bounded messages), its generated stub, and the credentials
this service presents on its own account (a token when keys are configured, else the caller
headers). A service's adapters wrap a `Peer` in the few calls they make.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc

from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller
from loyalty_kit.channels import channel_to
from loyalty_kit.settings import Settings

S = TypeVar("S")
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Peer(Generic[S]):
    """Another service as this one calls it."""

    stub: S
    channel: grpc.aio.Channel
    credentials: ServiceCredentials

    def metadata(self, caller: Caller) -> Metadata:
        """The metadata of a call made as `caller` (who this service says it acts for)."""
        return self.credentials.metadata(caller)

    async def close(self) -> None:
        await self.channel.close()


def peer(
    settings: Settings, caller: str, target: str, stub: Callable[[grpc.aio.Channel], S]
) -> Peer[S]:
    """`peer(settings, "benefits", "points", PointsServiceStub)`: the points service as the
    benefits service calls it, at the target `settings` name for it."""
    channel = channel_to(settings, target)
    return Peer(stub(channel), channel, ServiceCredentials.from_settings(caller, settings.data_dir))
