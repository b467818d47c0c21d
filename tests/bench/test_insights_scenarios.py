"""The insights benchmarks at a tiny size, so they keep running: every scenario through
`python -m bench` (its own embedded PostgreSQL and NATS), each answering a result, not an
error; and the generated history's members drawn the same way for the same seed."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from bench.insights_data import HOME_SHARES, UNITS, member_draws
from tests.bench.runs import bench_results

SCENARIOS = (
    "raw-insights",
    "insights-dashboards",
    "raw-insights-refresh",
    "insights-refresh",
    "insights-duckdb",
    "insights-lag",
)


def test_the_same_seed_draws_the_same_members_and_another_seed_others() -> None:
    assert member_draws(500, 18) == member_draws(500, 18)
    assert member_draws(500, 18) != member_draws(500, 19)


def test_members_join_at_their_home_units_in_huayues_shares() -> None:
    homes = Counter(home for _, home, *_ in member_draws(20_000, 18))
    for unit, share in zip(UNITS, HOME_SHARES, strict=True):
        assert abs(homes[unit] / 20_000 - share) < 0.02


def test_members_join_before_they_stop_and_within_the_three_years() -> None:
    for _, _, joined, stopped, _ in member_draws(5_000, 18):
        assert joined < stopped


@pytest.mark.slow
def test_every_insights_scenario_runs_at_a_tiny_size() -> None:
    env = {
        **os.environ,
        "BENCH_INSIGHTS_RUNS": "1",
        "BENCH_INSIGHTS_RATE": "50",
        "BENCH_INSIGHTS_LAG_SECONDS": "1",
        "LOYALTY_AUTH_TRUST_HEADERS": "true",  # as the bench runs the services
    }
    results = bench_results(["--only", *SCENARIOS, "--members", "300"], env=env, timeout=280)
    assert set(results) == set(SCENARIOS)
    assert results["raw-insights"]["extra"]["rows"]["ledger_postings"] == 300 * 20
    dashboards = results["insights-dashboards"]["extra"]["figures"]
    assert all(f["runs"] == 1 for f in dashboards.values())
    # The nine figures over a period, and six of them again over the standard window (read from
    # the stored counts once the refresh before them made those).
    assert len(dashboards) == 15
    assert {n.removesuffix("_standard") for n in dashboards if n.endswith("_standard")} == {
        "rfm_counts",
        "multi_unit_members",
        "unit_overlap",
        "unit_flows",
        "spend_share",
        "liability",
    }
    assert results["insights-dashboards"]["extra"]["materialised_refresh_seconds"] is not None
    assert results["insights-refresh"]["count"] == 9
    assert results["insights-refresh"]["ratio"] is not None
    assert set(results["insights-duckdb"]["extra"]["queries"]) == {"rfm", "liability", "overlap"}
    lag = results["insights-lag"]
    assert lag["count"] == 50 and lag["extra"]["missing"] == 0


@pytest.mark.slow
def test_the_recommendation_scenarios_run_at_a_tiny_size() -> None:
    results = bench_results(
        ["--only", "insights-recs", "--members", "300"],
        env={**os.environ, "BENCH_RECS_REQUESTS": "20"},
        timeout=280,
    )
    assert set(results) == {"raw-insights-recs", "insights-recs"}
    recs = results["insights-recs"]
    assert recs["count"] == 20 and recs["ratio"] is not None
    assert recs["extra"]["members"] == 300 and recs["extra"]["rebuilt"]["popularity"] > 0
    evaluation = recs["extra"]["evaluation"]
    assert evaluation["precision_at_5"] > evaluation["popularity_precision_at_5"]
