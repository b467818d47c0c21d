from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest_asyncio
from loyalty.identity.v1 import identity_service_pb2_grpc
from loyalty_devstack.testing import ServiceRunner
from loyalty_identity.app import SPEC
from loyalty_kit.caller import PERSONAL_DATA_READ, Caller
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

MALL_POS = Caller(unit="mall", client_id="mall-pos", scopes=frozenset({"earn"}))
SERVICE_DESK = Caller(unit="mall", client_id="service-desk", scopes=frozenset({PERSONAL_DATA_READ}))


@dataclass
class IdentityClient:
    """A generated stub over a real channel, calling as a given business-unit client."""

    service: RunningService
    channel: grpc.aio.Channel

    def as_(self, caller: Caller) -> Any:
        stub = identity_service_pb2_grpc.IdentityServiceStub(self.channel)
        metadata = caller.metadata()

        class Bound:
            def __getattr__(self, name: str) -> Callable[..., Any]:
                method = getattr(stub, name)

                def call(request: Any, **kwargs: Any) -> Any:
                    return method(request, metadata=metadata, timeout=10, **kwargs)

                return call

        return Bound()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def identity_service(settings: Settings) -> AsyncIterator[RunningService]:
    runner = ServiceRunner(settings)
    service = await runner.start(SPEC)
    yield service
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def identity(identity_service: RunningService) -> AsyncIterator[IdentityClient]:
    async with grpc.aio.insecure_channel(identity_service.target) as channel:
        yield IdentityClient(identity_service, channel)
