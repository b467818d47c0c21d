"""The identity service's latency benchmarks at a tiny size, so they keep running:
`python -m bench` (its own embedded PostgreSQL and NATS) with each one's ceiling, under the
closed loop and the steady load: member codes resolved once each at a till, and sign-in codes
checked once each by the member app's backend."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.bench.runs import bench_results

# Members enough that the ceiling's scans and the service's (each phase's, one after the other)
# never come round to a member whose code of this 30-second step was scanned already.
MEMBERS = 8000


def run_tiny(scenario: str, rate_variable: str) -> dict[str, Any]:
    """The scenario and its ceiling on a few thousand members for half a second: the
    scenario's line."""
    env = {
        **os.environ,
        rate_variable: "20",
        "LOYALTY_AUTH_TRUST_HEADERS": "true",  # as the bench runs the services
    }
    command = ["--only", scenario, "--members", str(MEMBERS)]
    results = bench_results(
        [*command, "--seconds", "0.5", "--warmup", "0.1", "--concurrency", "4"], env=env
    )
    assert set(results) == {f"raw-{scenario}", scenario}
    service = results[scenario]
    assert service["count"] > 0 and service["ratio"] is not None and service["p99_ms"]
    extra: dict[str, Any] = service["extra"]
    assert extra["steady_p99_ms"] > 0 and "goal_met" in extra and extra["p99_vs_ceiling"] > 0
    return extra


@pytest.mark.slow
def test_the_member_code_benchmark_runs_at_a_tiny_size() -> None:
    extra = run_tiny("member-code-resolve", "BENCH_MEMBER_CODE_RATE")
    assert extra["coded_members"] == MEMBERS
    assert extra["statements_per_call"] >= 4  # the secret, the use, the member, the commit


@pytest.mark.slow
def test_the_sign_in_benchmark_runs_at_a_tiny_size() -> None:
    extra = run_tiny("sign-in-verify", "BENCH_SIGN_IN_RATE")
    assert extra["goal_p99_ms"] == 50.0
    # The challenge read and used, the member found, the session and its token, the commit.
    assert extra["statements_per_call"] >= 6
