"""The sign-in benchmark at a tiny size, so it keeps running: `python -m bench` (its own
embedded PostgreSQL and NATS) with the ceiling and the identity service, every challenge's code
checked once, signing in its member, under the closed loop and the steady load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_sign_in_benchmark_runs_at_a_tiny_size() -> None:
    env = {
        **os.environ,
        "BENCH_SIGN_IN_RATE": "20",
        "LOYALTY_AUTH_TRUST_HEADERS": "true",  # as the bench runs the services
    }
    command = [sys.executable, "-m", "bench", "--only", "sign-in-verify", "--members"]
    done = subprocess.run(
        [*command, "2000", "--seconds", "0.5", "--warmup", "0.1", "--concurrency", "4"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = {
        line["scenario"]: line
        for line in map(json.loads, (x for x in done.stdout.splitlines() if x.startswith("{")))
    }
    assert set(results) == {"raw-sign-in-verify", "sign-in-verify"}
    service = results["sign-in-verify"]
    assert service["count"] > 0 and service["ratio"] is not None and service["p99_ms"]
    extra = service["extra"]
    assert extra["steady_p99_ms"] > 0 and extra["goal_p99_ms"] == 50.0
    assert "goal_met" in extra and extra["p99_vs_ceiling"] > 0
    # The challenge read and used, the member found, the session and its token, the commit.
    assert extra["statements_per_call"] >= 6
