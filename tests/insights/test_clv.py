"""Lifetime value: member summaries from a history, BG/NBD and Gamma-Gamma fitted on histories
drawn from known parameters (the fit finds them again, roughly), predictions per member, and the
calibration/hold-out report's error bounded.

The fits are maximum likelihood on a few thousand members, a few seconds each once pytensor has
compiled the models; with an empty compile cache (a fresh machine) the first fit compiles them
to C, half a minute to a minute more, once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from loyalty_insights.domain.clv import (
    AMOUNT,
    AT,
    MEMBER,
    HoldoutReport,
    LifetimeValueModel,
    NotEnoughHistory,
    PurchaseParameters,
    SpendParameters,
    fit,
    holdout_report,
    simulate_transactions,
    summarise,
)

# A member buys about every 50 days (rate Gamma(0.6, 30) per day) and leaves after a repeat
# purchase with probability about 1 in 6 (Beta(0.8, 4)); spends CNY 600 a purchase on average.
PURCHASES = PurchaseParameters(r=0.6, alpha=30.0, a=0.8, b=4.0)
SPEND = SpendParameters(p=6.0, q=4.0, v=300.0)
START, CALIBRATION_END, HOLDOUT_END = (
    datetime(2024, 1, 1),
    datetime(2025, 1, 1),
    datetime(2025, 7, 1),
)
MEMBERS = 5_000


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """Members who first bought in 2024, followed to mid-2025."""
    return simulate_transactions(
        MEMBERS, PURCHASES, SPEND, START, HOLDOUT_END, first_purchases_until=CALIBRATION_END, seed=7
    )


@pytest.fixture(scope="module")
def summary(history: pd.DataFrame) -> pd.DataFrame:
    return summarise(history, HOLDOUT_END)


@pytest.fixture(scope="module")
def model(summary: pd.DataFrame) -> Iterator[LifetimeValueModel]:
    yield fit(summary)


@pytest.fixture(scope="module")
def report(history: pd.DataFrame) -> HoldoutReport:
    return holdout_report(history, CALIBRATION_END, HOLDOUT_END)


def _day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def test_a_summary_counts_repeat_purchase_days_up_to_the_date() -> None:
    history = pd.DataFrame(
        [
            ("ann", _day("2026-01-01 10:00"), 100.0),
            ("ann", _day("2026-01-01 18:00"), 50.0),  # the same day: one purchase
            ("ann", _day("2026-01-11 12:00"), 200.0),
            ("ann", _day("2026-01-31 09:00"), 300.0),
            ("ann", _day("2026-03-01 09:00"), 999.0),  # after the date
            ("bob", _day("2026-01-20 20:00"), 80.0),
            ("cat", _day("2026-02-15 08:00"), 70.0),  # first bought after the date
        ],
        columns=[MEMBER, AT, AMOUNT],
    )
    summary = summarise(history, datetime(2026, 2, 10)).set_index(MEMBER)
    assert sorted(summary.index) == ["ann", "bob"]
    ann, bob = summary.loc["ann"], summary.loc["bob"]
    assert (ann.frequency, ann.recency, ann["T"]) == (2, 30, 40)
    assert (ann.monetary_value, ann.historical_value) == (250, 650)
    assert (bob.frequency, bob.recency, bob["T"]) == (0, 0, 21)
    assert (bob.monetary_value, bob.historical_value) == (0, 80)


def test_a_simulated_history_keeps_to_its_periods_and_its_seed(history: pd.DataFrame) -> None:
    assert history[MEMBER].nunique() == MEMBERS
    assert history[AT].min() >= pd.Timestamp(START)
    assert history[AT].max() < pd.Timestamp(HOLDOUT_END)
    first = history.groupby(MEMBER)[AT].min()
    assert first.max() <= pd.Timestamp(CALIBRATION_END)
    assert (history[AMOUNT] >= 0.01).all()
    again = simulate_transactions(
        MEMBERS, PURCHASES, SPEND, START, HOLDOUT_END, first_purchases_until=CALIBRATION_END, seed=7
    )
    pd.testing.assert_frame_equal(history, again)
    other = simulate_transactions(
        MEMBERS, PURCHASES, SPEND, START, HOLDOUT_END, first_purchases_until=CALIBRATION_END, seed=8
    )
    assert len(other) != len(history)


def test_the_fit_finds_the_parameters_the_history_was_drawn_from(model: LifetimeValueModel) -> None:
    fitted, true = model.purchases, PURCHASES
    assert fitted.r == pytest.approx(true.r, rel=0.25)
    assert fitted.alpha == pytest.approx(true.alpha, rel=0.25)
    assert fitted.a == pytest.approx(true.a, rel=0.4)
    assert fitted.b == pytest.approx(true.b, rel=0.4)
    # Leaving after a purchase: the mean probability a / (a + b) is what matters most.
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(true.a / (true.a + true.b), rel=0.2)
    # Gamma-Gamma's three parameters trade off against each other; the mean spend does not.
    assert model.spend.mean_spend == pytest.approx(SPEND.mean_spend, rel=0.1)


def test_predictions_per_member(model: LifetimeValueModel, summary: pd.DataFrame) -> None:
    predicted = model.predict(summary)
    assert list(predicted.columns) == [
        MEMBER, "historical_value", "probability_alive", "expected_purchases",
        "expected_spend", "predicted_value",
    ]  # fmt: skip
    assert predicted[MEMBER].tolist() == summary[MEMBER].tolist()
    assert predicted["probability_alive"].between(0, 1).all()
    assert (predicted["expected_purchases"] >= 0).all()
    assert (predicted["predicted_value"] >= 0).all()
    np.testing.assert_allclose(
        predicted["predicted_value"],
        model.expected_purchases(summary, 360) * predicted["expected_spend"],
        rtol=1e-9,
    )


def test_predictions_follow_the_rows_given(
    model: LifetimeValueModel, summary: pd.DataFrame
) -> None:
    some = summary.iloc[[40, 3, 17, 0]]
    alone = model.predict(some)
    together = model.predict(summary).set_index(MEMBER).loc[some[MEMBER]]
    np.testing.assert_allclose(alone["predicted_value"], together["predicted_value"], rtol=1e-9)
    assert alone[MEMBER].tolist() == some[MEMBER].tolist()


def test_what_the_models_say_of_typical_members(model: LifetimeValueModel) -> None:
    members = pd.DataFrame(
        {
            MEMBER: ["once", "regular", "gone quiet", "big spender"],
            "frequency": [0, 10, 10, 10],
            "recency": [0, 300, 60, 300],
            "T": [310, 310, 310, 310],
            "monetary_value": [0, 500, 500, 5000],
        }
    )
    predicted = model.predict(members).set_index(MEMBER)

    def of(member: str) -> dict[str, float]:
        values = predicted.loc[member].to_numpy(dtype=float)
        return dict(zip(map(str, predicted.columns), values.tolist(), strict=True))

    once, regular, quiet, big = of("once"), of("regular"), of("gone quiet"), of("big spender")
    assert once["probability_alive"] == 1  # BG/NBD: nobody leaves before a repeat purchase
    assert once["expected_spend"] == pytest.approx(model.spend.mean_spend)
    assert regular["probability_alive"] > 0.9 > 0.1 > quiet["probability_alive"]
    assert regular["expected_purchases"] > once["expected_purchases"] > quiet["expected_purchases"]
    assert big["expected_spend"] > regular["expected_spend"]
    assert big["predicted_value"] > regular["predicted_value"]


def test_discounting_lowers_the_predicted_value(
    model: LifetimeValueModel, summary: pd.DataFrame
) -> None:
    some = summary.head(50)
    plain = model.predicted_value(some)
    discounted = model.predicted_value(some, monthly_discount_rate=0.01)
    assert (discounted < plain).all()
    assert (discounted > 0.9 * plain).all()


def test_the_holdout_report_predicts_the_next_half_year(report: HoldoutReport) -> None:
    assert report.members == MEMBERS and report.holdout_days == 181
    assert abs(report.purchases_error) < 0.1
    assert report.predicted_value == pytest.approx(report.actual_value, rel=0.15)
    assert report.mean_absolute_error < 0.8 * report.baseline_mean_absolute_error
    assert report.mean_absolute_error <= report.root_mean_squared_error
    assert report.purchases.r == pytest.approx(PURCHASES.r, rel=0.3)
    assert report.purchases.alpha == pytest.approx(PURCHASES.alpha, rel=0.3)


def test_fitting_needs_repeat_purchases() -> None:
    lone = pd.DataFrame(
        {MEMBER: ["a", "b"], "frequency": [0, 0], "recency": [0, 0], "T": [5, 9],
         "monetary_value": [0, 0]}
    )  # fmt: skip
    with pytest.raises(NotEnoughHistory):
        fit(lone)
    with pytest.raises(ValueError, match="columns"):
        fit(lone.drop(columns="T"))


def test_a_holdout_needs_purchases_on_both_sides_of_the_date() -> None:
    history = simulate_transactions(20, PURCHASES, SPEND, START, CALIBRATION_END, seed=1)
    with pytest.raises(NotEnoughHistory):
        holdout_report(history, HOLDOUT_END, datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        holdout_report(history, CALIBRATION_END, START)
