"""Lifetime value's pure rules: when the schedule asks for a fit, the hold-out length a request
may ask for, fit names, predictions in money, the figure's means, and what a fit stores for
members who bought and members who never did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from loyalty_insights.adapters.clv_process import FitOutcome
from loyalty_insights.domain.clv_fits import (
    DEFAULT_HOLDOUT_DAYS,
    HoldoutGroup,
    Totals,
    cents,
    fit_due,
    fit_id_of,
    holdout_days_of,
    holdout_groups,
)
from loyalty_insights.service_layer.clv_fitter import _predictions
from loyalty_kit.errors import InvalidArgument

T0 = datetime(2026, 11, 30, 8, tzinfo=UTC)
DAY = 86_400.0


def test_the_schedule_fits_an_interval_after_the_last_fit_was_asked_for() -> None:
    assert not fit_due(T0, T0 - timedelta(days=9), T0 + timedelta(hours=23), DAY)
    assert fit_due(T0, T0 - timedelta(days=9), T0 + timedelta(days=1), DAY)


def test_before_any_fit_the_schedule_counts_from_the_replicas_start() -> None:
    assert not fit_due(None, T0, T0 + timedelta(hours=1), DAY)
    assert fit_due(None, T0, T0 + timedelta(days=1, seconds=1), DAY)


@pytest.mark.parametrize(("asked", "days"), [(0, DEFAULT_HOLDOUT_DAYS), (1, 1), (3650, 3650)])
def test_a_holdout_of_zero_days_is_the_default(asked: int, days: int) -> None:
    assert holdout_days_of(asked) == days


@pytest.mark.parametrize("asked", [-1, 3651])
def test_a_holdout_out_of_range_is_refused_naming_the_field(asked: int) -> None:
    with pytest.raises(InvalidArgument) as raised:
        holdout_days_of(asked)
    assert [v.field for v in raised.value.field_violations] == ["holdout_days"]


def test_a_fit_is_named_lifetime_value_fits_slash_its_id() -> None:
    assert fit_id_of("lifetimeValueFits/abc-1") == "abc-1"
    for bad in ("", "lifetimeValueFits/", "fits/abc", "lifetimeValueFits/a/b"):
        with pytest.raises(InvalidArgument):
            fit_id_of(bad)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_prediction_in_money_is_none_or_whole_cents_never_negative(value: float) -> None:
    found = cents(value)
    if not np.isfinite(value) or abs(value) > 1e15:
        assert found is None
    else:
        assert found is not None and found >= 0
        assert found == found.quantize(Decimal("0.01"))


def test_means_over_no_members_are_zero() -> None:
    assert Totals(0, Decimal(0), Decimal(0), 0.0).mean_predicted_value == 0
    totals = Totals(4, Decimal("100"), Decimal("50"), 0.5)
    assert (totals.mean_historical_value, totals.mean_predicted_value) == (
        Decimal(25),
        Decimal("12.5"),
    )


def test_members_who_never_bought_get_a_new_customers_value_and_no_probability_alive() -> None:
    summary = pd.DataFrame(
        {"member_id": ["a", "b"], "historical_value": [Decimal("120.50"), Decimal("30")]}
    )
    outcome = FitOutcome(
        parameters=(1, 2, 3, 4, 5, 6, 7),
        holdout=None,
        holdout_error="",
        probability_alive=np.array([0.9, np.nan]),
        predicted_value=np.array([1234.567, -0.2]),
        new_member_value=88.888,
    )

    made = _predictions(summary, ["c"], outcome)

    assert [
        (p.member_id, p.historical_value, p.predicted_value, p.probability_alive) for p in made
    ] == [
        ("a", Decimal("120.50"), Decimal("1234.57"), 0.9),
        ("b", Decimal("30"), Decimal("0.00"), None),
        ("c", Decimal(0), Decimal("88.89"), None),
    ]


def test_holdout_groups_sum_members_by_calibration_repeat_purchases() -> None:
    repeats = [0, 0, 1, 3, 7, 12, 30]
    predicted = [0.5, 0.25, 1.0, 2.0, 4.0, 6.0, 10.0]
    actual = [0, 1, 1, 2, 5, 5, 9]
    assert holdout_groups(repeats, predicted, actual) == (
        HoldoutGroup(0, False, 2, 0.75, 1),
        HoldoutGroup(1, False, 1, 1.0, 1),
        HoldoutGroup(3, False, 1, 2.0, 2),
        HoldoutGroup(7, True, 3, 20.0, 19),
    )
    assert holdout_groups([], [], []) == ()
    with pytest.raises(ValueError):
        holdout_groups([0], [1.0, 2.0], [1])
