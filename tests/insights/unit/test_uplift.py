"""A journey's uplift statistics without storage: the two-proportion and the two-means
intervals (against worked values and by their coverage over simulated experiments), the
relative uplift's interval, the too-small flag and the window a request may ask for."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from loyalty_insights.domain.uplift import (
    DEFAULT_WINDOW_DAYS,
    MAX_WINDOW_DAYS,
    Z95,
    Group,
    JourneyUplift,
    Sample,
    insufficient,
    means,
    proportions,
    window_days_of,
)


def sample(values: list[float]) -> Sample:
    return Sample(len(values), float(sum(values)), float(sum(v * v for v in values)))


def group(members: int, converted: int, spend: list[float] | None = None) -> Group:
    spend = spend if spend is not None else [0.0] * members
    return Group(members, converted, 0, sample(spend), sample([0.0] * members))


def test_z_is_the_normals_97_5th_percentile() -> None:
    assert pytest.approx(NormalDist().inv_cdf(0.975), abs=1e-12) == Z95


def test_two_proportions_worked_example() -> None:
    # 120 of 1,000 treated bought against 80 of 1,000 held out.
    found = proportions(120, 1000, 80, 1000)
    se = math.sqrt(0.12 * 0.88 / 1000 + 0.08 * 0.92 / 1000)
    assert found.absolute == pytest.approx(0.04)
    assert found.low == pytest.approx(0.04 - Z95 * se)
    assert found.high == pytest.approx(0.04 + Z95 * se)
    assert found.significant
    assert found.relative == pytest.approx(0.5)
    # Katz: the log risk ratio's standard error.
    se_log = math.sqrt(1 / 120 - 1 / 1000 + 1 / 80 - 1 / 1000)
    assert found.relative_low == pytest.approx(1.5 * math.exp(-Z95 * se_log) - 1)
    assert found.relative_high == pytest.approx(1.5 * math.exp(Z95 * se_log) - 1)
    assert found.relative_low is not None and found.relative_low > 0


def test_equal_groups_show_no_significant_uplift() -> None:
    found = proportions(50, 500, 50, 500)
    assert found.absolute == 0
    assert found.low < 0 < found.high
    assert not found.significant


def test_no_control_conversion_has_no_relative_uplift() -> None:
    found = proportions(10, 100, 0, 100)
    assert found.absolute == pytest.approx(0.1)
    assert found.relative is None and found.relative_low is None


def test_an_empty_group_compares_nothing() -> None:
    found = proportions(10, 100, 0, 0)
    assert (found.absolute, found.low, found.high, found.significant) == (0, 0, 0, False)
    assert means(sample([1.0, 2.0]), Sample(0, 0, 0)).significant is False


def test_two_means_welch_interval() -> None:
    treated = [100.0, 120.0, 80.0, 140.0, 110.0]
    held = [90.0, 70.0, 100.0, 60.0]
    found = means(sample(treated), sample(held))
    t, c = np.array(treated), np.array(held)
    se = math.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c))
    diff = t.mean() - c.mean()
    assert found.absolute == pytest.approx(diff)
    assert found.low == pytest.approx(diff - Z95 * se)
    assert found.high == pytest.approx(diff + Z95 * se)
    assert found.relative == pytest.approx(t.mean() / c.mean() - 1)
    assert found.relative_low is not None and found.relative_high is not None
    assert found.relative_low < found.relative < found.relative_high  # type: ignore[operator]


def test_sample_variance_is_the_unbiased_one() -> None:
    values = [3.0, 5.0, 9.0, 11.0]
    assert sample(values).variance == pytest.approx(np.var(values, ddof=1))
    assert sample([4.0]).variance == 0.0


@pytest.mark.parametrize("seed", [1, 2])
def test_the_conversion_interval_covers_the_true_uplift_about_95_percent(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, pt, pc, runs = 800, 0.15, 0.10, 2000
    covered = 0
    for xt, xc in zip(rng.binomial(n, pt, runs), rng.binomial(n, pc, runs), strict=True):
        found = proportions(int(xt), n, int(xc), n)
        covered += found.low <= pt - pc <= found.high
    assert 0.93 <= covered / runs <= 0.97


def test_the_spend_interval_covers_the_true_uplift_about_95_percent() -> None:
    rng = np.random.default_rng(7)
    covered, runs = 0, 1000
    for _ in range(runs):
        t = rng.exponential(120.0, 400)
        c = rng.exponential(100.0, 300)
        found = means(sample(list(t)), sample(list(c)))
        covered += found.low <= 20.0 <= found.high
    assert 0.93 <= covered / runs <= 0.97


def test_small_groups_are_insufficient() -> None:
    assert insufficient(group(29, 10), group(100, 10))
    assert insufficient(group(100, 10), group(100, 4))  # too few converted
    assert insufficient(group(100, 97), group(100, 50))  # too few not converted
    assert not insufficient(group(100, 10), group(100, 50))


def test_a_journey_uplift_puts_the_measures_together() -> None:
    found = JourneyUplift(
        "j1",
        30,
        group(200, 60, [100.0] * 60 + [0.0] * 140),
        group(200, 30, [100.0] * 30 + [0.0] * 170),
    )
    assert found.conversion.absolute == pytest.approx(0.15)
    assert found.conversion.significant
    assert found.spend.absolute == pytest.approx(15.0)
    assert found.spend.relative == pytest.approx(1.0)
    assert found.points.absolute == 0 and not found.points.significant
    assert not found.insufficient


def test_the_window_a_request_may_ask_for() -> None:
    assert window_days_of(0) == DEFAULT_WINDOW_DAYS
    assert window_days_of(7) == 7
    assert window_days_of(MAX_WINDOW_DAYS) == MAX_WINDOW_DAYS
    assert window_days_of(-1) is None
    assert window_days_of(MAX_WINDOW_DAYS + 1) is None
