"""One purchase through the gateway is one trace, from its HTTP span through points' EarnPoints,
the PointsEarned event, the tiers service's upgrade (TierChanged) and benefits' welcome gift
(CouponIssued); its log lines, in every service, carry its request id and that trace; the
gateway writes one access log line for it, by route template."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from loyalty_kit import telemetry
from loyalty_kit.settings import Settings
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.gateway.test_composite import phone, purchase
from tests.support.suite import Run, traced_suite

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def run(make_settings: Callable[..., Settings], run_id: str) -> AsyncIterator[Run]:
    async with traced_suite(make_settings, run_id, "obs") as started:
        yield started


def in_trace(trace_id: str) -> list[ReadableSpan]:
    return [s for s in telemetry.recorded_spans() if s.context.trace_id == int(trace_id, 16)]


def consumed(spans: list[ReadableSpan]) -> set[tuple[str, str]]:
    """(Consumer group, span name) of the trace's consumer spans."""
    return {
        (str(s.attributes["messaging.consumer.group.name"]), s.name)
        for s in spans
        if s.kind == SpanKind.CONSUMER and s.attributes is not None
    }


async def trace_reaching(trace_id: str, name: str, consumer: tuple[str, str]) -> list[ReadableSpan]:
    """The trace's spans once one named `name` and `consumer`'s (group, span name) are among
    them (events take a moment, and a consumer's span ends after its commit: the relay may
    publish what it wrote before)."""

    async def reached() -> list[ReadableSpan]:
        while True:
            spans = in_trace(trace_id)
            if any(s.name == name for s in spans) and consumer in consumed(spans):
                return spans
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(reached(), 20)


def log_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


async def test_a_purchase_is_one_trace_from_http_to_the_welcome_gift_and_its_logs_say_so(
    run: Run, capfd: pytest.CaptureFixture[str]
) -> None:
    number, request_id = phone(), f"pos-{uuid.uuid4().hex[:12]}"
    async with await run.gateway.session("mall", "earn") as mall:
        registered = await mall.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "identities": [{"type": "phone", "value": number}],
            },
        )
        assert registered.status_code == 200, registered.text
        capfd.readouterr()
        # Enough for silver (5,000 CNY): the tiers service upgrades, benefits gives its gift.
        answer = await mall.post(
            "/v1/purchases:record",
            json=purchase(number, "mall", "6000"),
            headers={"X-Request-Id": request_id},
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Request-Id"] == request_id
    trace_id = answer.headers["traceresponse"].split("-")[1]

    ns = run.settings.event_namespace
    spans = await trace_reaching(
        trace_id,
        f"create {ns}.benefits.v1.CouponIssued",
        ("benefits-tiers", f"process {ns}.tiers.v1.TierChanged"),
    )
    kinds = {(s.name, s.kind) for s in spans}
    (http,) = [s for s in spans if s.parent is None]  # the trace's root
    assert (http.name, http.kind) == ("POST /v1/purchases:record", SpanKind.SERVER)
    assert http.attributes is not None and http.attributes["http.route"] == "/v1/purchases:record"
    assert ("/loyalty.points.v1.PointsService/EarnPoints", SpanKind.SERVER) in kinds
    assert (f"create {ns}.points.v1.PointsEarned", SpanKind.PRODUCER) in kinds
    # the services' queries are in it too (SQLAlchemy's instrumentation)
    queries = [s for s in spans if s.attributes and s.attributes.get("db.system") == "postgresql"]
    assert any(str(s.attributes.get("db.name", "")).endswith("points") for s in queries), {
        s.name for s in spans
    }
    consumers = consumed(spans)  # an earn's trace holds its LedgerPosted's processing too
    assert ("tiers-activity", f"process {ns}.points.v1.PointsEarned") in consumers
    assert (f"create {ns}.tiers.v1.TierChanged", SpanKind.PRODUCER) in kinds  # the upgrade
    assert ("benefits-tiers", f"process {ns}.tiers.v1.TierChanged") in consumers

    # The logs of every service taking part carry the request id and the trace.
    lines = [
        line for line in log_lines(capfd.readouterr().err) if line.get("request_id") == request_id
    ]
    access = [line for line in lines if line["event"] == "http"]
    assert len(access) == 1
    ((entry),) = access
    assert (entry["method"], entry["route"], entry["status"]) == (
        "POST",
        "/v1/purchases:record",
        200,
    )
    assert entry["client"] and entry["ms"] > 0
    assert entry["trace_id"] == trace_id and entry["span_id"]
    earned = next(line for line in lines if line.get("method", "").endswith("/EarnPoints"))
    assert earned["event"] == "rpc" and earned["trace_id"] == trace_id
    assert all(line["trace_id"] == trace_id for line in lines)
    assert number not in json.dumps(lines)


async def test_the_access_log_names_routes_by_template_and_keeps_no_query(
    run: Run, capfd: pytest.CaptureFixture[str]
) -> None:
    number = phone()
    async with await run.gateway.session("mall", "earn") as mall:
        capfd.readouterr()
        found = await mall.get(
            "/v1/members:resolve", params={"identity.type": "phone", "identity.value": number}
        )
        ladder = await mall.get("/v1/ladder")
        nowhere = await mall.get(f"/v1/nowhere/{number}")
    assert ladder.status_code == 200
    err = capfd.readouterr().err
    assert number not in err  # neither the query nor the path
    spans = in_trace(found.headers["traceresponse"].split("-")[1])
    assert spans and number not in "".join(s.to_json() for s in spans)
    assert {s.name for s in spans if s.parent is None} == {"GET /v1/members:resolve"}
    access = {line["request_id"]: line for line in log_lines(err) if line["event"] == "http"}
    assert access[ladder.headers["X-Request-Id"]]["route"] == "/v1/ladder"
    assert access[found.headers["X-Request-Id"]]["status"] == found.status_code
    assert access[nowhere.headers["X-Request-Id"]]["route"] == "unmatched"
    assert access[nowhere.headers["X-Request-Id"]]["status"] == 404
