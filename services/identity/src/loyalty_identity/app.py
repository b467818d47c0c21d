"""The identity service as the kit runs it."""

from __future__ import annotations

import grpc
from loyalty.identity.v1 import identity_service_pb2_grpc
from loyalty_kit.server import ServiceContext, ServiceSpec

from loyalty_identity.entrypoints.access import ACCESS
from loyalty_identity.entrypoints.servicer import SERVICE, IdentityServicer
from loyalty_identity.service_layer import handlers
from loyalty_identity.settings import keyring_for


def add_servicers(server: grpc.aio.Server, context: ServiceContext) -> None:
    keyring = context.extras.get("keyring") or keyring_for(context.settings)
    servicer = IdentityServicer(context, keyring, context.extras.get("clock", handlers.utc_now))
    context.extras["servicer"] = servicer
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)


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
    commands={"rotate-keys": rotate_keys},
)
