"""The trigger benchmark at a tiny size, so it keeps running: `python -m bench` (its own embedded
PostgreSQL and NATS) with the ceiling and the engagement service, every event's three journey
actions and challenge progress found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_trigger_benchmark_runs_at_a_tiny_size() -> None:
    env = {
        **os.environ,
        "BENCH_TRIGGERS_RATE": "40",
        "BENCH_TRIGGERS_SECONDS": "1",
        "LOYALTY_AUTH_TRUST_HEADERS": "true",  # as the bench runs the services
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "engagement-triggers"],
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
    assert set(results) == {"raw-engagement-triggers", "engagement-triggers"}
    service = results["engagement-triggers"]
    assert service["count"] == 40 and service["extra"]["missing"] == 0
    # Three journeys' actions per event (and the first event's and the warm-up's, as many as
    # the measured ones at this size), at the stand-in peers.
    assert service["extra"]["actions_called"] == 3 * (1 + 40 + 40)
    # What the service wrote for each measured event, as PostgreSQL's statistics have it so far
    # (flushed by each backend about once a second, so a second's run shows part of it).
    written = service["extra"]["rows_written_per_event"]
    assert written["journey_entries"] > 0 and written["step_runs"] > 0
    assert service["p99_ms"] is not None and service["ratio"] is not None
    assert results["raw-engagement-triggers"]["count"] == 40
