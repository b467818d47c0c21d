"""The kit's metrics, seen as Prometheus sees them: a real service's /metrics over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import wrappers_pb2
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty_devstack.embedded import free_port
from loyalty_devstack.testing import ServiceRunner, metadata_for
from loyalty_kit import db, jobs, metrics
from loyalty_kit.access import rule
from loyalty_kit.caller import Caller
from loyalty_kit.metrics import ServiceMetrics, safe
from loyalty_kit.settings import Settings
from loyalty_kit.uow import UnitOfWork
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.kit.echo import echo_call, echo_spec
from tests.support.metrics import moved, scrape
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

ECHO = {"grpc_service": "loyalty.test.v1.EchoService", "grpc_method": "Echo"}


async def test_each_call_is_counted_and_timed_by_method_and_code(services: ServiceRunner) -> None:
    service = await services.start(echo_spec())
    before = await scrape(service)
    async with grpc.aio.insecure_channel(service.target) as channel:
        call = echo_call(channel)
        await call(wrappers_pb2.StringValue(value="hello"))
        await call(wrappers_pb2.StringValue(value="hello again"))
        for refused in ("missing", "invalid"):
            with pytest.raises(grpc.aio.AioRpcError):
                await call(wrappers_pb2.StringValue(value=refused))
    after = await scrape(service)

    handled = "grpc_server_handled_total"
    assert moved(before, after, handled, grpc_code="OK", grpc_type="unary", **ECHO) == 2
    assert moved(before, after, handled, grpc_code="NOT_FOUND", **ECHO) == 1
    assert moved(before, after, handled, grpc_code="INVALID_ARGUMENT", **ECHO) == 1
    assert moved(before, after, "grpc_server_handling_seconds_count", grpc_code="OK", **ECHO) == 2
    # Probes are not calls: health checks stay out, as they stay out of the access log.
    assert not any("grpc.health" in s.labels.get("grpc_service", "") for s in after.samples)
    assert after.value("loyalty_health_serving") == 1
    assert after.value("loyalty_db_pool_max_connections") > 0
    assert "process_resident_memory_bytes" in after.names()


async def test_services_in_one_process_answer_for_themselves(services: ServiceRunner) -> None:
    one = await services.start(echo_spec("echo_one"))
    other = await services.start(echo_spec("echo_other"))
    assert one.metrics_port != other.metrics_port
    before = await scrape(other)
    async with grpc.aio.insecure_channel(one.target) as channel:
        await echo_call(channel)(wrappers_pb2.StringValue(value="only here"))
    assert moved(before, await scrape(other), "grpc_server_handled_total", **ECHO) == 0
    assert (await scrape(one)).value("grpc_server_handled_total", **ECHO) == 1


async def test_a_port_taken_leaves_the_service_running_without_metrics(
    services: ServiceRunner, settings: Settings
) -> None:
    first = await services.start(echo_spec("echo_first"))
    taken = settings.model_copy(update={"metrics_port": first.metrics_port})
    second = await services.start(echo_spec("echo_second"), taken)
    assert second.metrics_port is None
    async with grpc.aio.insecure_channel(second.target) as channel:
        answer = await echo_call(channel)(wrappers_pb2.StringValue(value="still serving"))
    assert answer.value == "still serving"
    off = await services.start(
        echo_spec("echo_off"), settings.model_copy(update={"metrics_port": -1})
    )
    assert off.metrics_port is None


async def test_each_service_has_a_port_of_its_own_and_one_setting_overrides_them() -> None:
    defaults = Settings()
    ports = {
        n: defaults.metrics_port_of(n)
        for n in ("gateway", "identity", "points", "tiers", "benefits", "insights", "engagement")
    }
    assert ports == {
        "gateway": 9460,
        "identity": 9461,
        "points": 9462,
        "tiers": 9463,
        "benefits": 9464,
        "insights": 9465,
        "engagement": 9466,
    }
    assert Settings(metrics_port=9090).metrics_port_of("points") == 9090
    assert Settings().metrics_port_of("echo") == -1  # a service without a default serves none


async def test_events_count_once_their_transaction_commits(
    kit_db: AsyncEngine, settings: Settings
) -> None:
    recorded = ServiceMetrics("counting")
    sessions = db.session_factory(kit_db)
    earned = points_events.PointsEarned(member_id="m-1", unit="hotel", points=120)
    upgraded = tier_events.TierChanged(member_id="m-1", from_tier="basic", to_tier="gold")

    def points_earned() -> float:
        value = recorded.registry.get_sample_value(
            "loyalty_points_total", {"movement": "earned", "unit": "hotel"}
        )
        return value or 0.0

    with metrics.use(recorded):
        async with UnitOfWork(sessions, settings.event_namespace) as uow:
            await uow.outbox.add(earned)
            await uow.rollback()
        assert points_earned() == 0
        async with UnitOfWork(sessions, settings.event_namespace) as uow:
            await uow.outbox.add_all([earned, upgraded])
            assert points_earned() == 0  # written, not yet committed
            await uow.commit()
    assert points_earned() == 120
    changes = {"from_tier": "basic", "to_tier": "gold"}
    assert recorded.registry.get_sample_value("loyalty_tier_changes_total", changes) == 1
    written = {"event_type": "loyalty.points.v1.PointsEarned"}
    assert recorded.registry.get_sample_value("loyalty_events_written_total", written) == 1


async def test_pool_check_outs_that_wait_are_counted(settings: Settings) -> None:
    await db.ensure_database(settings.server_url, settings.database_for("poolwaits"))
    engine = db.create_engine(settings.service_database_url("poolwaits"), pool_size=1)
    try:
        pool = engine.sync_engine.pool
        assert isinstance(pool, db.CountingPool)
        held = [await engine.connect(), await engine.connect()]  # the pool and its overflow
        assert pool.waits == 0
        waiting = asyncio.create_task(engine.connect().start())
        while pool.waits == 0:  # the third check-out is waiting for one of them
            await asyncio.sleep(0.01)
        await held.pop().close()
        third = await waiting
        await third.close()
        await held.pop().close()
        assert (pool.waits, pool.timeouts) == (1, 0)
        assert pool.wait_seconds > 0
    finally:
        await engine.dispose()


async def test_job_rounds_are_counted_with_their_outcome() -> None:
    recorded = ServiceMetrics("jobs")
    stopping = asyncio.Event()
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise RuntimeError("the first round fails")
        stopping.set()

    with metrics.use(recorded):
        await jobs.every(0.01, stopping, work, "nightly")
    sample: Callable[[str, dict[str, str]], float | None] = recorded.registry.get_sample_value
    assert sample("loyalty_job_runs_total", {"job": "nightly", "outcome": "failed"}) == 1
    assert sample("loyalty_job_runs_total", {"job": "nightly", "outcome": "ok"}) == 1
    assert sample("loyalty_job_duration_seconds_count", {"job": "nightly"}) == 2


async def test_label_values_that_look_personal_are_not_exported() -> None:
    for personal in (
        "13800138000",
        "+86 138 0013 8000",
        "wei@example.cn",
        "members/3f2a9c1e-1380-4138-8001-138001380001",
        "3f2a9c1e-1380-4138-8001-138001380001",
        "110105199001011234",
    ):
        assert safe(personal) == "redacted", personal
    for kept in ("hotel", "gold", "WELCOME-GIFT", "loyalty.points.v1.PointsEarned", ""):
        assert safe(kept) == kept


async def test_the_endpoint_stops_with_the_service(settings: Settings) -> None:
    runner = ServiceRunner(settings.model_copy(update={"metrics_port": free_port()}))
    service = await runner.start(echo_spec("echo_stops"))
    port = service.metrics_port
    assert port is not None
    await scrape(service)
    await runner.stop_all()
    with pytest.raises(OSError):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()


async def test_member_tokens_refused_by_the_access_rules_are_counted_by_reason(
    services: ServiceRunner,
) -> None:
    # A method a member may call for itself (the member named in `value`), and one it may not.
    own = dataclasses.replace(
        echo_spec("echo_members", uses_database=False), access={"Echo": rule(member_field="value")}
    )
    closed = dataclasses.replace(echo_spec("echo_closed", uses_database=False))
    mine, other = f"m-{uuid.uuid4()}", f"m-{uuid.uuid4()}"
    member = Caller(client_id=f"member:{mine}", scopes=frozenset({"self:read"}), member=mine)
    refusals = "loyalty_member_token_refusals_total"
    for spec, value, reason in (
        (own, other, "MEMBER_MISMATCH"),
        (closed, mine, "MEMBER_TOKEN_REFUSED"),
    ):
        service = await services.start(spec)
        before = await scrape(service)
        async with grpc.aio.insecure_channel(service.target) as channel:
            call = echo_call(channel)
            refused = await fails(
                call(wrappers_pb2.StringValue(value=value), metadata=metadata_for(member))
            )
            assert refused.reason == reason
            if spec is own:  # the member's own: passes, and counts nothing
                await call(wrappers_pb2.StringValue(value=mine), metadata=metadata_for(member))
        after = await scrape(service)
        assert moved(before, after, refusals, reason=reason, service=spec.name) == 1
        assert moved(before, after, refusals) == 1
        assert mine not in after.text and other not in after.text  # no member in a label
