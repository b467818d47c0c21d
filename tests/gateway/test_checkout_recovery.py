"""Settling checkouts cut short: a part that was taken is given back exactly once, a part that
never arrived is simply not taken (nothing on the member's statement), within seconds of the
service answering again; an attempt still running on its replica is left alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty_devstack.embedded import free_port
from loyalty_devstack.testing import ServiceRunner
from loyalty_gateway.adapters.checkout_log import Attempt
from loyalty_gateway.app import SPEC as GATEWAY
from loyalty_gateway.flows.checkout import CheckoutSaga
from loyalty_gateway.flows.errors import UndoPending
from loyalty_kit.caller import Caller, set_current_caller
from loyalty_kit.db import driver_connection
from loyalty_kit.server import RunningService, start_service
from loyalty_kit.settings import Settings
from loyalty_points.app import SPEC as POINTS

from tests.gateway.conftest import Gateway
from tests.gateway.test_checkout import DRINK, checkout, member_with, remaining
from tests.gateway.test_composite import phone
from tests.gateway.test_http import reason_of
from tests.support.clock import Clock

pytestmark = pytest.mark.asyncio(loop_scope="session")
SETTLED_WITHIN = 15.0  # seconds after the service answers again (the job runs every 2 s)


@dataclass
class Standby:
    """A gateway of its own (its own checkouts log) in front of a points replica of its own
    (the run's points database), which the test stops and starts again on the same port."""

    gateway: Gateway
    points_settings: Settings
    points_port: int
    clock: Clock
    points: RunningService | None = None

    async def start_points(self) -> None:
        self.points = await start_service(
            POINTS, self.points_settings, port=self.points_port, clock=self.clock
        )
        await self.points.wait_until_serving()

    async def stop_points(self) -> None:
        if self.points is not None:
            await self.points.stop(grace=0.5)
            self.points = None

    async def state_of(self, request_id: str) -> str:
        async with self.gateway.service.context.uow() as uow:
            conn = await driver_connection(uow.session)
            state: str = await conn.fetchval(
                "SELECT state FROM checkouts WHERE request_id = $1", request_id
            )
        return state


@pytest_asyncio.fixture(loop_scope="session")
async def standby(
    settings: Settings,
    identity_service: RunningService,
    tiers_service: RunningService,
    benefits_service: RunningService,
    gateway: Gateway,
    clock: Clock,
) -> AsyncIterator[Standby]:
    points_port = free_port()
    points_settings = settings.model_copy(update={"identity_target": identity_service.target})
    runner = ServiceRunner(settings)
    http_port = free_port()
    service = await runner.start(
        GATEWAY,
        settings.model_copy(
            update={
                "identity_target": identity_service.target,
                "points_target": f"127.0.0.1:{points_port}",
                "tiers_target": tiers_service.target,
                "benefits_target": benefits_service.target,
                "gateway_http_port": http_port,
                "database_name": f"{settings.database_prefix}gateway_standby",
            }
        ),
    )
    found = Standby(
        Gateway(service, f"http://127.0.0.1:{http_port}"), points_settings, points_port, clock
    )
    await found.start_points()
    async with httpx.AsyncClient(base_url=found.gateway.url) as http:
        for _ in range(200):  # uvicorn starts beside the gRPC server
            try:
                await http.get("/openapi.json")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    try:
        yield found
    finally:
        await found.stop_points()
        await runner.stop_all()


async def statement(gateway: Gateway, member: str) -> list[str]:
    """The kinds of the member's postings, oldest first."""
    async with await gateway.session("hotel", "earn", "redeem") as http:
        page = (await http.get(f"/v1/{member}/postings")).json()
    return [p["kind"] for p in reversed(page.get("postings", []))]


async def settled(state_of: Any, request_id: str, within: float = 60.0) -> float:
    """Seconds until the checkout's attempt is settled (its state `open`), polled."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await state_of(request_id) == "open":
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"checkout {request_id} not settled in {within} s")


async def test_points_that_never_arrived_are_not_taken_and_the_checkout_settles_in_seconds(
    gateway: Gateway, standby: Standby
) -> None:
    """The points service is down when a checkout reaches its points: the benefit taken first
    comes back, the redemption that never arrived is never made (no redemption and no
    cancellation on the statement), and the checkout settles seconds after points is back."""
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "400.00")
    async with await standby.gateway.session("hotel", "earn", "redeem") as hotel:
        before = await remaining(hotel, member, "hotel", DRINK)
        await standby.stop_points()
        pay = checkout(number, "hotel", points="150", benefit=DRINK)
        cut = await hotel.post("/v1/checkouts:redeem", json=pay)
        assert cut.status_code == 503 and reason_of(cut) == "CHECKOUT_UNDO_PENDING", cut.text
        blocked = await hotel.post("/v1/checkouts:redeem", json=pay)
        assert blocked.status_code in (409, 503), blocked.text
        await asyncio.sleep(3)  # the job tries meanwhile, and cannot settle it yet
        assert await standby.state_of(pay["requestId"]) == "undoing"
        await standby.start_points()
        took = await settled(standby.state_of, pay["requestId"])
        assert took < SETTLED_WITHIN
        assert await statement(gateway, member) == ["POSTING_KIND_EARN"]
        assert await remaining(hotel, member, "hotel", DRINK) == before
        # The same request now pays, once.
        paid = await hotel.post("/v1/checkouts:redeem", json=pay)
        assert paid.status_code == 200, paid.text
        assert paid.json()["balance"]["available"] == "250"
        assert await statement(gateway, member) == ["POSTING_KIND_EARN", "POSTING_KIND_REDEEM"]
        assert await remaining(hotel, member, "hotel", DRINK) == before - 1


async def begin(
    gateway: Gateway, gateway_service: RunningService, number: str, member: str, **parts: Any
) -> tuple[CheckoutSaga, Attempt, tuple[tuple[str, str], ...]]:
    """An attempt begun on the gateway as a hotel till, nothing taken yet."""
    client_id, _ = await gateway.client("hotel", "earn", "redeem")
    caller = Caller(unit="hotel", client_id=client_id, scopes=frozenset({"redeem"}))
    checkouts = gateway_service.root.flows.checkout
    request = pb.RedeemAtCheckoutRequest(
        unit="hotel", order_id=f"cut-{uuid.uuid4().hex[:8]}", request_id=uuid.uuid4().hex, **parts
    )
    request.identity.type, request.identity.value = "phone", number
    set_current_caller(caller)
    row, _ = await checkouts.begin(request, "hotel", member.split("/")[1])
    return checkouts, row, checkouts.credentials.metadata(caller)


async def lease_runs_out(gateway_service: RunningService, row: Attempt) -> None:
    """As if the replica running the attempt stopped long enough ago."""
    async with gateway_service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        await conn.execute(
            "UPDATE checkouts SET updated_at = now() - interval '5 minutes' WHERE checkout_id = $1",
            uuid.UUID(row.checkout_id),
        )
        await uow.commit()


def state_in(gateway_service: RunningService) -> Any:
    async def state_of(checkout_id: str) -> str:
        async with gateway_service.context.uow() as uow:
            conn = await driver_connection(uow.session)
            state: str = await conn.fetchval(
                "SELECT state FROM checkouts WHERE checkout_id = $1", uuid.UUID(checkout_id)
            )
        return state

    return state_of


async def test_a_gateway_stopped_before_the_points_step_arrived_gives_back_only_the_benefit(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "400.00")
    checkouts, row, md = await begin(
        gateway, gateway_service, number, member, points=150, benefit=DRINK
    )
    async with await gateway.session("hotel", "earn", "redeem") as hotel:
        before = await remaining(hotel, member, "hotel", DRINK)
        await checkouts.step(row, "benefit", md)  # taken; the points step started, never sent
        assert await remaining(hotel, member, "hotel", DRINK) == before - 1
        await lease_runs_out(gateway_service, row)
        await settled(state_in(gateway_service), row.checkout_id)
        assert await remaining(hotel, member, "hotel", DRINK) == before
        assert await statement(gateway, member) == ["POSTING_KIND_EARN"]


async def test_a_part_that_was_taken_is_given_back_exactly_once(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "400.00")
    checkouts, row, md = await begin(gateway, gateway_service, number, member, points=150)
    await checkouts.step(row, "points", md)  # taken; then the gateway "stops"
    await lease_runs_out(gateway_service, row)
    await asyncio.gather(checkouts.recover(), checkouts.recover())  # (and the job, perhaps)
    await settled(state_in(gateway_service), row.checkout_id)
    await lease_runs_out(gateway_service, row)  # a settled attempt is never taken again
    await checkouts.recover()
    assert await statement(gateway, member) == [
        "POSTING_KIND_EARN",
        "POSTING_KIND_REDEEM",
        "POSTING_KIND_REDEMPTION_CANCEL",
    ]
    async with await gateway.session("hotel", "earn", "redeem") as hotel:
        assert (await hotel.get(f"/v1/{member}/balance")).json()["balance"]["available"] == "400"


async def test_an_attempt_running_within_its_lease_is_left_to_its_replica(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "400.00")
    checkouts, row, md = await begin(
        gateway, gateway_service, number, member, points=100, benefit=DRINK
    )
    await checkouts.step(row, "benefit", md)
    await checkouts.recover()  # another replica's job: the lease is still running
    assert await checkouts.renew(row)  # the owner goes on to its next step
    await checkouts.step(row, "points", md)
    assert await checkouts.set_state(row, "completed", pb.RedeemAtCheckoutResponse())
    assert await statement(gateway, member) == ["POSTING_KIND_EARN", "POSTING_KIND_REDEEM"]


async def test_an_owner_whose_lease_was_taken_over_stops_and_takes_nothing_more(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    """A replica so slow that its lease ran out between two steps: the job of another replica
    settles the attempt, and the owner, finding its lease gone, takes no further part."""
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "400.00")
    shared = gateway_service.root.flows.checkout

    class Slow(CheckoutSaga):
        async def step(self, row: Attempt, step: str, md: tuple[tuple[str, str], ...]) -> Any:
            answer = await super().step(row, step, md)
            if step == "benefit":  # then the replica stalls past its lease
                await lease_runs_out(gateway_service, row)
                await settled(state_in(gateway_service), row.checkout_id)
            return answer

    slow = Slow(shared.services, shared.uow, shared.deadline, shared.credentials)
    client_id, _ = await gateway.client("hotel", "earn", "redeem")
    caller = Caller(unit="hotel", client_id=client_id, scopes=frozenset({"redeem"}))
    set_current_caller(caller)
    request = pb.RedeemAtCheckoutRequest(
        unit="hotel", order_id="slow", points=100, benefit=DRINK, request_id=uuid.uuid4().hex
    )
    request.identity.type, request.identity.value = "phone", number
    async with await gateway.session("hotel", "earn", "redeem") as hotel:
        before = await remaining(hotel, member, "hotel", DRINK)
        with pytest.raises(UndoPending):
            await slow(request, shared.credentials.metadata(caller))
        assert await remaining(hotel, member, "hotel", DRINK) == before
    assert await statement(gateway, member) == ["POSTING_KIND_EARN"]  # points never asked
