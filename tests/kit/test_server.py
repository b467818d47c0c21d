"""The kit's server bootstrap, seen from a client over a real channel."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit import db
from loyalty_kit import server as server_module
from loyalty_kit.status import bad_request, error_info, from_rpc_error

from tests.kit.echo import ECHO_SERVICE, echo_call, echo_spec

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_health_is_serving_for_the_server_and_each_service(services: ServiceRunner) -> None:
    service = await services.start(echo_spec())
    async with grpc.aio.insecure_channel(service.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", ECHO_SERVICE):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(services: ServiceRunner) -> None:
    service = await services.start(echo_spec())
    async with grpc.aio.insecure_channel(service.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {ECHO_SERVICE, "grpc.health.v1.Health"} <= names


async def test_domain_error_becomes_status_with_error_info(services: ServiceRunner) -> None:
    service = await services.start(echo_spec())
    async with grpc.aio.insecure_channel(service.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await echo_call(channel)(wrappers_pb2.StringValue(value="missing"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    status = from_rpc_error(raised.value)
    assert status is not None and status.code == code_pb2.NOT_FOUND
    info = error_info(status)
    assert info is not None
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "MEMBER_NOT_FOUND",
        "echo.loyalty",
        {"member": "m-1"},
    )


async def test_invalid_input_carries_one_field_violation_per_field(services: ServiceRunner) -> None:
    service = await services.start(echo_spec())
    async with grpc.aio.insecure_channel(service.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await echo_call(channel)(wrappers_pb2.StringValue(value="invalid"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = from_rpc_error(raised.value)
    assert status is not None
    violations = bad_request(status)
    assert violations is not None
    assert [(v.field, v.description) for v in violations.field_violations] == [
        ("phone", "not a valid phone number"),
        ("profile.birthday", "must be a past date"),
    ]
    info = error_info(status)
    assert info is not None and info.reason == "INVALID_ARGUMENT"


async def test_unexpected_error_is_internal_and_leaks_nothing(
    services: ServiceRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    service = await services.start(echo_spec())
    async with grpc.aio.insecure_channel(service.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await echo_call(channel)(wrappers_pb2.StringValue(value="crash"))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (raised.value.details() or "")
    assert "13812345678" not in (raised.value.details() or "")
    status = from_rpc_error(raised.value)
    assert status is not None
    info = error_info(status)
    assert info is not None and info.reason == "INTERNAL" and info.metadata["reference"]
    # The reference ties the client's error to the log line, which has no phone in it.
    logged = capfd.readouterr().err
    assert info.metadata["reference"] in logged
    assert "13812345678" not in logged


async def test_graceful_stop_finishes_calls_in_flight_and_refuses_new_ones(
    services: ServiceRunner,
) -> None:
    service = await services.start(echo_spec())
    async with grpc.aio.insecure_channel(service.target) as channel:
        call = echo_call(channel)
        in_flight = asyncio.ensure_future(call(wrappers_pb2.StringValue(value="slow:0.6")))
        await asyncio.sleep(0.2)
        stopping = asyncio.create_task(service.stop(grace=5))
        await asyncio.sleep(0.1)
        health = await service.health.Check(health_pb2.HealthCheckRequest(), None)  # type: ignore[arg-type]
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert (await in_flight).value == "slow:0.6"
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(wrappers_pb2.StringValue(value="late"), timeout=1)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_health_follows_the_database(services: ServiceRunner) -> None:
    service = await services.start(echo_spec())
    healthy_engine = service.context.engine
    assert healthy_engine is not None
    # Point the service at a database server that is not there.
    service.context.engine = db.create_engine(
        healthy_engine.url.set(host="127.0.0.1", port=1, query={}), pool_size=1
    )
    try:
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def status() -> int:
                return int((await stub.Check(health_pb2.HealthCheckRequest())).status)

            for _ in range(100):
                if await status() == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                await asyncio.sleep(0.05)
            assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING
            await service.context.engine.dispose()
            service.context.engine = healthy_engine
            for _ in range(100):
                if await status() == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.05)
            assert await status() == health_pb2.HealthCheckResponse.SERVING
    finally:
        service.context.engine = healthy_engine


async def test_stopping_is_bounded_when_a_job_ignores_cancellation(services: ServiceRunner) -> None:
    """A job stuck where cancellation does not reach (a database that stopped answering)
    must not keep the service from stopping."""
    import contextlib
    import dataclasses
    import time

    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # as a call stuck in a driver
                await released.wait()

    spec = dataclasses.replace(echo_spec(uses_database=False), jobs=lambda _ctx: [stubborn])
    service = await services.start(spec)
    started = time.monotonic()
    await service.stop(grace=0.1)
    assert time.monotonic() - started < 15
    released.set()  # let it end, so the test leaves nothing running


async def test_background_work_that_crashes_is_started_again(
    services: ServiceRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer or relay that meets a bug or a surprise from a dependency must not leave the
    service serving without it: it is logged and started again, until the service stops."""
    monkeypatch.setattr(server_module, "RESTART_PAUSE_SECONDS", 0.05)
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError("a surprise")
        await asyncio.Event().wait()  # the third start keeps running

    spec = dataclasses.replace(echo_spec(uses_database=False), jobs=lambda _ctx: [flaky])
    service = await services.start(spec)
    for _ in range(100):
        if len(runs) == 3:
            break
        await asyncio.sleep(0.05)
    assert runs == [0, 1, 2]
    await service.stop(grace=0.1)
    assert len(runs) == 3  # stopped, not started again
