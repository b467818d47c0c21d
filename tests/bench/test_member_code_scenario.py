"""The member-code benchmark at a tiny size, so it keeps running: `python -m bench` (its own
embedded PostgreSQL and NATS) with the ceiling and the identity service, every code resolved
to its member once, under the closed loop and the steady load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_member_code_benchmark_runs_at_a_tiny_size() -> None:
    env = {
        **os.environ,
        "BENCH_MEMBER_CODE_RATE": "20",
        "LOYALTY_AUTH_TRUST_HEADERS": "true",  # as the bench runs the services
    }
    command = [sys.executable, "-m", "bench", "--only", "member-code-resolve", "--members"]
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
    assert set(results) == {"raw-member-code-resolve", "member-code-resolve"}
    service = results["member-code-resolve"]
    assert service["count"] > 0 and service["ratio"] is not None and service["p99_ms"]
    extra = service["extra"]
    assert extra["coded_members"] == 2000 and extra["steady_p99_ms"] > 0
    assert "goal_met" in extra and extra["p99_vs_ceiling"] > 0
    assert extra["statements_per_call"] >= 4  # the secret, the use, the member, the commit
