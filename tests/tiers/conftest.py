# The points fixtures (a running points service with the Huayue programme, a client that
# registers members through identity) serve the tiers tests too.
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest_asyncio
from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_devstack.demo import huayue_ladder
from loyalty_kit.server import RunningService

from tests.points.conftest import ADMIN, points, programme
from tests.support.clients import As

__all__ = ["points", "points_learn", "programme", "tier_of", "tiers"]


@pytest_asyncio.fixture(loop_scope="session")
async def tiers(tiers_service: RunningService) -> AsyncIterator[Any]:
    """An admin client of the tiers service, with the Huayue ladder in force."""
    async with grpc.aio.insecure_channel(tiers_service.target) as channel:
        stub = As(tiers_service_pb2_grpc.TiersServiceStub, channel, ADMIN)
        await stub.UpdateLadder(
            pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id="tests-ladder-v1")
        )
        yield stub


async def tier_of(tiers: Any, member: str, expected: str) -> pb.GetMemberTierResponse:
    """The member's tier once it is `expected` (events take a moment to arrive)."""
    for _ in range(200):
        found: pb.GetMemberTierResponse = await tiers.GetMemberTier(
            pb.GetMemberTierRequest(member=member)
        )
        if found.tier == expected:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{member} never became {expected}; is {found.tier}")


async def points_learn(points: Any, member: str, expected: str) -> None:
    """Wait until the points service applied TierChanged (it prices earns by tier). Points reads
    TierChanged in the stream's order, after every tier change earlier tests made (a year-end of
    many members takes seconds to work through on a loaded machine): a minute at most."""
    for _ in range(1200):
        if (await points.balance(member)).tier == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"points never learned that {member} is {expected}")
