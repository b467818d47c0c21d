"""The trigger benchmark at a tiny size, so it keeps running: `python -m bench` (its own embedded
PostgreSQL and NATS) with the ceiling and the engagement service, every event's three journey
actions and challenge progress found."""

from __future__ import annotations

import os

import pytest

from tests.bench.runs import bench_results


@pytest.mark.slow
def test_the_trigger_benchmark_runs_at_a_tiny_size() -> None:
    env = {
        **os.environ,
        "BENCH_TRIGGERS_RATE": "40",
        "BENCH_TRIGGERS_SECONDS": "1",
        "LOYALTY_AUTH_TRUST_HEADERS": "true",  # as the bench runs the services
    }
    results = bench_results(["--only", "engagement-triggers"], env=env)
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
