"""The ladder in force, and publishing a new version of it."""

from __future__ import annotations

from loyalty_tiers.domain.errors import NoLadder
from loyalty_tiers.domain.ladder import Ladder
from loyalty_tiers.service_layer.uow import AbstractUnitOfWork


async def ladder(uow: AbstractUnitOfWork) -> Ladder:
    found = await uow.tiers.ladder()
    if found is None:
        raise NoLadder()
    return found


async def publish_ladder(uow: AbstractUnitOfWork, new: Ladder) -> Ladder:
    new.validate()
    new.version = await uow.tiers.add_ladder(new)
    return new
