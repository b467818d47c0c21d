"""`make run` as a user meets it: the runner starts the five services on real infrastructure,
they answer, and Ctrl-C stops everything cleanly. Also each service's `migrate` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty_devstack.embedded import Infrastructure, free_port, port_open
from loyalty_kit.auth import development_keys
from loyalty_kit.caller import Caller

SERVICES = ("identity", "points", "tiers", "benefits")
BIN = Path(sys.executable).parent


@pytest.fixture
def suite_env(infra: Infrastructure, run_id: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        {
            f"LOYALTY_{name.upper()}_PORT": str(free_port())
            for name in (*SERVICES, "gateway_grpc", "gateway_http")
        }
    )
    env["LOYALTY_DEV_NATS_PORT"] = str(free_port())
    env["LOYALTY_DATABASE_PREFIX"] = f"{run_id}_suite_"
    env["LOYALTY_EVENT_NAMESPACE"] = f"{run_id}suite"
    env["LOYALTY_SHUTDOWN_GRACE_SECONDS"] = "2"
    # As deployed: no caller headers trusted, so the demo loader and the services' calls to
    # each other must carry tokens across the processes.
    env["LOYALTY_AUTH_TRUST_HEADERS"] = "false"
    if os.environ.get("LOYALTY_DATABASE_URL"):
        # CI's second pass: the runner must use the servers the environment names.
        env["LOYALTY_DATABASE_URL"] = infra.database_url
        env["LOYALTY_NATS_URL"] = infra.nats_url
    env["LOYALTY_DATA_DIR"] = str(tmp_path / "data")
    yield env


async def _serving(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
        return int(response.status)


async def _resolve_demo_member(port: int, data_dir: Path) -> str:
    # A token signed with the suite's development key (as the gateway would issue).
    signing, _ = development_keys(data_dir)
    token, _ = signing.issue(Caller(unit="mall", client_id="suite-test"), 60)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
        found = await stub.ResolveMember(
            pb.ResolveMemberRequest(
                identity=member_pb2.Identity(type="phone", value="+86 138 0013 8000")
            ),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=5,
        )
    return str(found.member.profile.full_name)  # masked: this caller may not read personal data


def test_the_runner_starts_and_stops_the_whole_suite(suite_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [str(BIN / "loyalty-dev"), "run"],
        env=suite_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "loyalty suite is up" in line or "could not start" in line:
                break
        assert any("loyalty suite is up" in line for line in output), "".join(output)
        # A fresh data folder gets the Huayue demo members, loaded through the public RPCs.
        assert (
            "demo programme: identity: 4 members (4 new); points: programme version 1 published;"
            " tiers: ladder version 1 published; benefits: " in "".join(output)
        )
        assert (
            asyncio.run(
                _resolve_demo_member(
                    int(suite_env["LOYALTY_IDENTITY_PORT"]), Path(suite_env["LOYALTY_DATA_DIR"])
                )
            )
            == "王*"
        )

        http_port = int(suite_env["LOYALTY_GATEWAY_HTTP_PORT"])
        response = httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["services"] == {name: "SERVING" for name in SERVICES}
        # The development API client the runner made: a token, then the HTTP API.
        made = json.loads(
            (Path(suite_env["LOYALTY_DATA_DIR"]) / "demo-api-client.json").read_text()
        )
        token = httpx.post(
            f"http://127.0.0.1:{http_port}/v1/token",
            auth=(made["client_id"], made["client_secret"]),
            timeout=5,
        ).json()["access_token"]
        ladder = httpx.get(
            f"http://127.0.0.1:{http_port}/v1/ladder",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert ladder.status_code == 200, ladder.text
        assert [t["code"] for t in ladder.json()["ladder"]["tiers"]][2] == "gold"
        for name in (*SERVICES, "gateway_grpc"):
            port = int(suite_env[f"LOYALTY_{name.upper()}_PORT"])
            assert asyncio.run(_serving(port)) == health_pb2.HealthCheckResponse.SERVING

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        output.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(output)
    assert process.returncode == 0, text
    assert "exit codes: identity 0, points 0, tiers 0, benefits 0, gateway 0" in text, text
    for name in (*SERVICES, "gateway_grpc", "gateway_http"):
        assert not port_open("127.0.0.1", int(suite_env[f"LOYALTY_{name.upper()}_PORT"]))
    # Nothing personal or secret in what the suite printed.
    assert "password" not in text.lower()


def test_migrate_command_is_safe_to_run_from_several_replicas(
    infra: Infrastructure, run_id: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_DATABASE_URL=infra.database_url,
        LOYALTY_DATABASE_PREFIX=f"{run_id}_cli_",
        LOYALTY_LOG_FORMAT="console",
    )
    replicas = [
        subprocess.Popen(
            [str(BIN / "loyalty-points"), "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in replicas]
    assert [p.returncode for p in replicas] == [0, 0, 0], outputs
    config = Config()
    config.set_main_option("script_location", "loyalty_points:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert all(f"database {run_id}_cli_points at {head}" in out for out in outputs), outputs
