"""The images are proven, not only written: `make images` (deploy/images/build.sh) builds the
points service's image with podman on a base made by debootstrap, and the image, run as a
cluster would run it (its own non-root user, read-only root, no capabilities), migrates its
database, answers health SERVING, refuses a call without a token, and stops on SIGTERM.

A build takes minutes, so this runs only with LOYALTY_IMAGE_TESTS=1 and podman installed. It
needs a PostgreSQL server reachable over TCP (the container cannot reach the tests' embedded
server, which listens on a private socket): LOYALTY_DATABASE_URL, else 127.0.0.1:5432.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_devstack.embedded import free_port
from loyalty_kit.status import error_info, from_rpc_error
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "localhost/loyalty-points:0.1.0"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def database_url() -> str | None:
    url = os.environ.get("LOYALTY_DATABASE_URL") or DEFAULT_URL
    parsed = make_url(url)
    if not parsed.host or parsed.host.startswith("/"):
        return None
    try:
        socket.create_connection((parsed.host, parsed.port or 5432), timeout=1).close()
    except OSError:
        return None
    return url


def why_skipped() -> str | None:
    if os.environ.get("LOYALTY_IMAGE_TESTS") != "1":
        return "image builds take minutes: set LOYALTY_IMAGE_TESTS=1 (and install podman)"
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        return "podman and debootstrap are not installed (deploy/README.md, 'Images')"
    if database_url() is None:
        return "no PostgreSQL server over TCP for the container (LOYALTY_DATABASE_URL)"
    return None


pytestmark = [
    pytest.mark.skipif(why_skipped() is not None, reason=why_skipped() or ""),
    pytest.mark.slow,
]

# As the Deployment runs it: read-only root with /tmp writable, every capability dropped.
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
HARDENED += ["--security-opt", "no-new-privileges", "--network", "host"]
# podman's default limits (a million open files, unlimited processes) are above what a
# container may set on some hosts (runc: "error setting rlimit ...: operation not permitted"):
# lowered ones start everywhere (deploy/README.md, "Images").
HARDENED += ["--ulimit", "nofile=8192:8192", "--ulimit", "nproc=1024:1024"]


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def public_key() -> str:
    """A token-verifying key (`kid:base64url`); the test signs nothing, it only sends none."""
    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return "k1:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture(scope="module")
def image() -> str:
    build = subprocess.run(
        [str(ROOT / "deploy" / "images" / "build.sh"), "points"],
        capture_output=True,
        text=True,
        timeout=40 * 60,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return IMAGE


@pytest.fixture
def environment() -> Iterator[list[str]]:
    """The container's settings: its own database prefix, dropped afterwards."""
    url = database_url()
    assert url is not None
    prefix = f"img{uuid.uuid4().hex[:8]}_"
    yield [
        "-e", f"LOYALTY_DATABASE_URL={url}",
        "-e", f"LOYALTY_DATABASE_PREFIX={prefix}",
        "-e", "LOYALTY_AUTH_TRUST_HEADERS=false",
        "-e", "LOYALTY_AUTH_DEV_KEYS=false",
        "-e", f"LOYALTY_AUTH_PUBLIC_KEYS={public_key()}",
        "-e", "LOYALTY_LOG_FORMAT=json",
    ]  # fmt: skip

    async def drop() -> None:
        parsed = make_url(url)
        connection = await asyncpg.connect(
            host=parsed.host, port=parsed.port or 5432, user=parsed.username,
            password=parsed.password, database=parsed.database or "postgres",
        )  # fmt: skip
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{prefix}points" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


def test_the_image_runs_as_its_own_user(image: str) -> None:
    result = podman("run", "--rm", *HARDENED, "--entrypoint", "id", image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uid=10001"), result.stdout


def test_the_image_migrates_serves_health_refuses_anonymous_calls_and_stops(
    image: str, environment: list[str]
) -> None:
    migrate = podman("run", "--rm", *HARDENED, *environment, image, "migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    port = free_port()
    name = f"loyalty-points-test-{uuid.uuid4().hex[:8]}"
    started = podman(
        "run", "--detach", "--name", name, *HARDENED, *environment,
        "-e", "LOYALTY_HOST=127.0.0.1", "-e", f"LOYALTY_POINTS_PORT={port}",
        "-e", "LOYALTY_MIGRATE_ON_START=false", "-e", "LOYALTY_DATABASE_CREATE=false",
        image,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        asyncio.run(serves_and_refuses(f"127.0.0.1:{port}"))
        stopped = podman("stop", "--time", "30", name, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        state = podman("inspect", "--format", "{{.State.ExitCode}}", name)
        assert state.stdout.strip() == "0", podman("logs", name).stderr[-4000:]
    finally:
        podman("rm", "--force", name)


async def serves_and_refuses(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=60)
        # SERVING once the database answers: watched, not polled.
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        async with asyncio.timeout(60):
            async for answer in watch:
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    break
        watch.cancel()

        stub = points_service_pb2_grpc.PointsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetBalance(points_pb.GetBalanceRequest(member="members/m-1"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    status = from_rpc_error(refused.value)
    info = error_info(status) if status is not None else None
    assert info is not None and info.reason == "TOKEN_MISSING"
