"""The identity service as the kit runs it: the servicer, and the programme's units it learns
from the points service's ProgrammePublished."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from loyalty.identity.v1 import identity_service_pb2_grpc
from loyalty.points.v1 import events_pb2 as points_events
from loyalty_kit.events import EventMeta
from loyalty_kit.inbox import EventConsumer
from loyalty_kit.server import ServiceContext, ServiceSpec

from loyalty_identity.entrypoints.access import ACCESS
from loyalty_identity.entrypoints.servicer import SERVICE, IdentityServicer
from loyalty_identity.service_layer import handlers
from loyalty_identity.service_layer.uow import IdentityUnitOfWork
from loyalty_identity.settings import keyring_for


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    keyring = context.extras.get("keyring") or keyring_for(context.settings)
    servicer = IdentityServicer(context, keyring, context.extras.get("clock", handlers.utc_now))
    context.extras["servicer"] = servicer
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)


def consumers(context: ServiceContext) -> Sequence[EventConsumer]:
    assert context.sessions is not None
    sessions, namespace = context.sessions, context.settings.event_namespace
    keyring = context.extras.get("keyring") or keyring_for(context.settings)
    clock = context.extras.get("clock", handlers.utc_now)
    programme = EventConsumer(
        "identity-programme",
        "points",
        lambda: IdentityUnitOfWork(sessions, namespace, keyring),
        namespace=namespace,
    )

    async def published(uow: IdentityUnitOfWork, e: Any, _m: EventMeta) -> None:
        await handlers.learn_programme(uow, list(e.units), e.version, clock())

    programme.on(points_events.ProgrammePublished, published)
    return [programme]


async def rotate_keys(context: ServiceContext) -> None:
    """Re-wrap every member's data key with the active master key, in chunks."""
    servicer = IdentityServicer(context, keyring_for(context.settings), handlers.utc_now)
    total = 0
    while True:
        async with servicer.uow() as uow:
            done = await handlers.rotate_keys(uow, 1000)
            await uow.commit()
        total += done
        print(f"re-wrapped {total} data keys", flush=True)
        if done == 0:
            return


SPEC = ServiceSpec(
    name="identity",
    access=ACCESS,
    service_names=(SERVICE,),
    add_servicers=add_servicers,
    migrations="loyalty_identity:migrations",
    consumers=consumers,
    commands={"rotate-keys": rotate_keys},
)
