"""A service's process runs on uvloop's event loop (`LOYALTY_UVLOOP`, on by default), and
grpc.aio serves on it: the echo service started the way a process entry point starts it, in a
process of its own, answering a call over a real channel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SERVE_ONCE = """
import asyncio, sys
import grpc
from google.protobuf import wrappers_pb2
from loyalty_kit.server import event_loop_name, run_loop, start_service
from loyalty_kit.settings import Settings
from tests.kit.echo import echo_call, echo_spec

async def served() -> str:
    running = await start_service(echo_spec(uses_database=False), settings)
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            answer = await echo_call(channel)(wrappers_pb2.StringValue(value="hi"), timeout=20)
        return f"{event_loop_name()} {answer.value}"
    finally:
        await running.stop(grace=0.1)

settings = Settings()
print(run_loop(served(), settings))
"""


@pytest.mark.parametrize(("setting", "loop"), [(None, "uvloop"), ("false", "asyncio")])
def test_a_service_process_serves_on_uvloop_unless_turned_off(
    setting: str | None, loop: str, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOYALTY_")}
    env.update(
        LOYALTY_DATA_DIR=str(tmp_path),
        LOYALTY_AUTH_TRUST_HEADERS="true",
        LOYALTY_METRICS_PORT="-1",
        PYTHONPATH=str(ROOT),
    )
    if setting is not None:
        env["LOYALTY_UVLOOP"] = setting
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONCE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == f"{loop} hi"
