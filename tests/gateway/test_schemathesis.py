"""Schemathesis against the gateway's /openapi.json: generated requests to every operation
(valid and invalid), with an admin token (a member's own channel, `/v1/me`, with a member's
token: it refuses every other). No answer may be a 5xx, and every answer must match
the document. The services behind it are a suite of their own (own databases and event
namespace), so the fuzzing cannot disturb other tests."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from loyalty_benefits.app import SPEC as BENEFITS
from loyalty_devstack.demo import huayue_ladder, huayue_programme
from loyalty_devstack.embedded import free_port
from loyalty_devstack.testing import ServiceRunner, metadata_for
from loyalty_engagement.app import SPEC as ENGAGEMENT
from loyalty_gateway.app import SPEC as GATEWAY
from loyalty_identity.app import SPEC as IDENTITY
from loyalty_insights.app import SPEC as INSIGHTS
from loyalty_kit.caller import Caller
from loyalty_kit.scopes import MEMBER_SCOPES
from loyalty_kit.settings import Settings
from loyalty_points.app import SPEC as POINTS
from loyalty_tiers.app import SPEC as TIERS

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")
ME = "MeService"  # the tag of a member's own channel's operations


@pytest_asyncio.fixture(loop_scope="session")
async def isolated_gateway(
    make_settings: Callable[..., Settings], run_id: str
) -> AsyncIterator[Gateway]:
    settings = make_settings(
        database_prefix=f"{run_id}_st_",
        event_namespace=f"{run_id}_st",
        gateway_http_port=free_port(),
        database_pool_size=3,  # a second suite beside the session's (see tests/support/suite.py)
    )
    runner = ServiceRunner(settings)
    try:
        identity = await runner.start(IDENTITY)
        points = await runner.start(
            POINTS, settings.model_copy(update={"identity_target": identity.target})
        )
        tiers = await runner.start(TIERS)
        benefits = await runner.start(
            BENEFITS, settings.model_copy(update={"points_target": points.target})
        )
        insights = await runner.start(INSIGHTS)
        engagement = await runner.start(ENGAGEMENT)
        gateway_settings = settings.model_copy(
            update={
                "identity_target": identity.target,
                "points_target": points.target,
                "tiers_target": tiers.target,
                "benefits_target": benefits.target,
                "insights_target": insights.target,
                "engagement_target": engagement.target,
            }
        )
        service = await runner.start(GATEWAY, gateway_settings)
        yield Gateway(service, f"http://127.0.0.1:{settings.gateway_http_port}")
    finally:
        await runner.stop_all()


async def test_no_generated_request_gets_a_5xx_or_an_answer_off_the_schema(
    isolated_gateway: Gateway, tmp_path: Path
) -> None:
    gateway = isolated_gateway
    async with await gateway.session("group", "admin", rate=100_000) as http:
        for _ in range(100):
            try:
                await http.get("/openapi.json")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        # The programme and ladder in force, so earning and tier reads work.
        for path, body in (
            ("/v1/ladder", {"requestId": "st-ladder", "ladder": _json(huayue_ladder())}),
            (
                "/v1/programme",
                {
                    "requestId": "st-programme",
                    "reason": "schemathesis",
                    "programme": _json(huayue_programme()),
                },
            ),
        ):
            answer = await http.put(path, json=body)
            assert answer.status_code == 200, answer.text
        token = http.headers["Authorization"]
        registered = await http.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "identities": [{"type": "email", "value": f"st-{uuid.uuid4().hex}@example.com"}],
            },
        )
        assert registered.status_code == 200, registered.text
    # Every operation as an admin but a member's own channel, which only a member's token may
    # call: those as a member of the suite's, with the token a sign-in would give.
    await schemathesis(gateway, tmp_path / "admin", token, "--exclude-tag", ME, max_time=150)
    member = registered.json()["member"]["memberId"]
    own = Caller(client_id=f"member:{member}", scopes=MEMBER_SCOPES, member=member)
    (_, bearer), *_ = metadata_for(own)
    await schemathesis(gateway, tmp_path / "member", bearer, "--include-tag", ME, max_time=60)


async def schemathesis(
    gateway: Gateway, folder: Path, token: str, *chosen: str, max_time: int
) -> None:
    """A schemathesis run of the chosen operations with `token` (the Authorization header)."""
    await asyncio.to_thread(folder.mkdir)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{gateway.url}/openapi.json",
        *chosen,
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--header",
        f"Authorization: {token}",
        "--max-examples",
        os.environ.get("LOYALTY_SCHEMATHESIS_EXAMPLES", "6"),
        "--phases",
        "examples,coverage,fuzzing",
        # One worker: with two threads, CPython 3.11's ast module (whose recursion guard is
        # process-wide) crashed schemathesis ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--seed",
        "20261123",
        "--generation-database",
        "none",
        "--max-time",
        str(max_time),
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(folder),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=folder,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    (folder / "schemathesis.txt").write_text(text)
    failures = text[text.find("FAILURES") :] if "FAILURES" in text else text
    assert process.returncode == 0, failures[:12000]
    assert "passed" in text.lower()


def _json(message: object) -> dict[str, object]:
    from google.protobuf import json_format

    return json_format.MessageToDict(message)  # type: ignore[arg-type]
