"""The identity service's operator commands (`loyalty-identity <command>`)."""

from __future__ import annotations

from loyalty_identity.bootstrap import Identity
from loyalty_identity.service_layer import handlers


async def rotate_keys(app: Identity) -> None:
    """Re-wrap every member's data key (and every member import's) with the active master
    key, in chunks."""
    total = 0
    while True:
        async with app.uow() as uow:
            done = await handlers.rotate_keys(uow, 1000)
            await uow.commit()
        total += done
        print(f"re-wrapped {total} data keys", flush=True)
        if done == 0:
            break
    total = 0
    while True:
        async with app.uow() as uow:
            done = await uow.imports.rewrap_keys(1000)
            await uow.commit()
        total += done
        if done == 0:
            print(f"re-wrapped {total} data keys of member imports", flush=True)
            return
