"""The demo's generated history (loyalty_devstack.demo_history) as the lifetime value models see
it: the same settings make the same files, every order falls in the history, each unit's
customers spend and come back as its known parameters say, and the calibration/hold-out report
on it (the last 180 days held out) predicts the hold-out's purchases and spend within a bound
and beats predicting every member the mean.

The members are the history's people (a person in two units' files is one member, as the
member import makes them); the report is the domain's, which the service's fit makes from the
same summaries in SQL. One fit of both models twice: seconds once pytensor's compile cache is
warm."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from statistics import mean

import pandas as pd
import pytest
from loyalty_devstack import demo_history as dh
from loyalty_devstack import legacy_files as lf
from loyalty_insights.domain.clv import AMOUNT, AT, MEMBER, HoldoutReport, holdout_report

SETTINGS = dh.HistorySettings()  # the demo's defaults: 6,000 accounts, seed 18, 730 days
END = datetime(2026, 11, 1, tzinfo=UTC)
HOLDOUT_DAYS = 180


@pytest.fixture(scope="module")
def truth() -> lf.Truth:
    return dh.legacy_accounts(SETTINGS, END)


@pytest.fixture(scope="module")
def orders(truth: lf.Truth) -> dict[str, list[dh.Order]]:
    return {
        unit: dh.orders(truth, unit, seed=SETTINGS.seed, end=END, days=SETTINGS.days)
        for unit in lf.UNITS
    }


@pytest.fixture(scope="module")
def report(truth: lf.Truth, orders: dict[str, list[dh.Order]]) -> HoldoutReport:
    person = {a.number: a.person.key for a in truth.all()}
    history = pd.DataFrame(
        [
            (f"p{person[o.account]}", o.at.replace(tzinfo=None), float(o.amount))
            for found in orders.values()
            for o in found
        ],
        columns=[MEMBER, AT, AMOUNT],
    )
    naive_end = END.replace(tzinfo=None)
    return holdout_report(history, naive_end - timedelta(days=HOLDOUT_DAYS), naive_end)


def test_the_history_is_the_same_for_the_same_settings_and_month(
    truth: lf.Truth, orders: dict[str, list[dh.Order]]
) -> None:
    again = dh.orders(truth, "mall", seed=SETTINGS.seed, end=END, days=SETTINGS.days)
    assert dh.order_file(again) == dh.order_file(orders["mall"])
    other_seed = dh.orders(truth, "mall", seed=SETTINGS.seed + 1, end=END, days=SETTINGS.days)
    assert dh.order_file(other_seed) != dh.order_file(orders["mall"])
    assert dh.history_end(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == END
    assert dh.history_end(END) == END


def test_every_order_is_an_account_of_its_unit_within_the_history(
    truth: lf.Truth, orders: dict[str, list[dh.Order]]
) -> None:
    start = END - timedelta(days=SETTINGS.days)
    for unit, found in orders.items():
        numbers = {a.number for a in truth.all() if a.unit == unit}
        assert {o.account for o in found} <= numbers
        assert all(start <= o.at < END and o.amount > 0 for o in found)
        assert len({o.order_id for o in found}) == len(found)
    header, first = dh.order_file(orders["hotel"]).decode().splitlines()[:2]
    assert header.split(",") == dh.ORDER_HEADER
    assert first.startswith("H000000001,H000000001-0001,")


@pytest.mark.parametrize("unit", lf.UNITS)
def test_each_unit_spends_and_comes_back_as_its_parameters_say(
    unit: str, truth: lf.Truth, orders: dict[str, list[dh.Order]]
) -> None:
    how = dh.BEHAVIOUR[unit]
    found = orders[unit]
    assert mean(float(o.amount) for o in found) == pytest.approx(how.spend, rel=0.15)
    # Among accounts with a repeat order, the mean gap is about the unit's days between orders
    # (Gamma-spread rates: the gaps of frequent buyers are many, so the mean is lower).
    by_account: dict[str, list[datetime]] = {}
    for o in found:
        by_account.setdefault(o.account, []).append(o.at)
    gaps = [
        (times[-1] - times[0]).total_seconds() / 86_400 / (len(times) - 1)
        for times in by_account.values()
        if len(times) > 1
    ]
    assert 0.3 * how.days_between < mean(gaps) < 1.5 * how.days_between
    assert len(by_account) == truth.rows(unit)  # every account bought at least once
    # ... first when it joined the unit's programme, as the member file says.
    joined = {a.number: a.joined for a in truth.all()}
    assert all(times[0] == joined[account] for account, times in by_account.items())


def test_the_holdout_report_on_the_demo_history_is_within_its_bounds(
    report: HoldoutReport,
) -> None:
    assert report.holdout_days == HOLDOUT_DAYS
    assert report.members > 3_500  # the people who had bought before the hold-out
    assert abs(report.purchases_error) < 0.1
    assert report.predicted_value == pytest.approx(report.actual_value, rel=0.15)
    assert report.mean_absolute_error < 0.8 * report.baseline_mean_absolute_error


def test_the_holdout_report_compares_light_and_heavy_buyers_apart(
    report: HoldoutReport,
) -> None:
    groups = report.groups
    assert [g.repeat_purchases for g in groups] == list(range(8))
    assert [g.and_more for g in groups] == [False] * 7 + [True]
    assert sum(g.members for g in groups) == report.members
    assert sum(g.actual_purchases for g in groups) == report.actual_purchases
    assert sum(g.predicted_purchases for g in groups) == pytest.approx(report.predicted_purchases)
    # Heavier buyers are predicted more purchases each, and each group of a few hundred members
    # within a third of what it bought.
    per_member = [g.predicted_purchases / g.members for g in groups]
    assert per_member == sorted(per_member)
    for g in groups:
        if g.members >= 200:
            assert g.predicted_purchases == pytest.approx(g.actual_purchases, rel=0.34), g
