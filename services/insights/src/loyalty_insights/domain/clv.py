"""Lifetime value: what a member has brought (historical value), the purchases and spend they
are predicted to bring in the next 12 months, and the probability they are still a customer
("alive"), from buy-till-you-die models: BG/NBD for purchases, Gamma-Gamma for spend per
purchase.

The models are fitted by pymc-marketing's CLV module, the maintained successor of `lifetimes`
(whose BG/NBD, Gamma-Gamma and summary code it carries on). Fitting is maximum a posteriori
with flat priors, i.e. maximum likelihood as `lifetimes` did: one optimisation, no sampling,
and no prior that depends on the time unit. Measured on this 2-core machine (shared, so
the larger figures are under load), members summarised beforehand, time in days:

    import of pymc_marketing.clv                  10 s with bytecode cached, 15-25 s without
    BG/NBD fit, first with an empty compile cache  ~35 s (pytensor compiles the model to C once)
    BG/NBD fit, 10,000 / 100,000 members           2.4 s / 2.7 s
    BG/NBD fit, 1,000,000 members                  14.5 s; its predictions for all 1.2 s
    BG/NBD + Gamma-Gamma, first fit in a process   15-40 s (graph rewrites, lazy imports)
    BG/NBD + Gamma-Gamma, 100,000 members          12 s, a later fit in the same process
    BG/NBD + Gamma-Gamma, 1,000,000 members        44 s; predictions for all 13 s
    `summarise` (pandas), 4.7 million purchases    50 s: the service summarises in SQL

So the service fits in a worker process that imports the library once, on a schedule, and
keeps the compile cache (pytensor's `compiledir`) on disk between runs. Without a C compiler
(`PYTENSOR_FLAGS=cxx=`) pytensor runs in pure Python: the 10,000-member BG/NBD fit took 173 s.

The data are the usual summary per member, at a date (`as_of`), in whole days; purchases on the
same day count as one (the models' time unit is the day):
- `frequency`: repeat purchase days (the first purchase day is not counted);
- `recency`: days from the first to the last purchase day (0 without repeat purchases);
- `T`: days from the first purchase day to `as_of`;
- `monetary_value`: the mean spend of the repeat purchase days (0 without repeat purchases);
- `historical_value`: everything the member spent up to `as_of`, first purchase included.

Predicted 12-month value is the library's: expected purchases times expected spend per
purchase, month by month when discounted (a month being 30 days, so 12 months are 360 days).
The Gamma-Gamma model is fitted on members with repeat purchases and assumes spend per purchase
does not depend on how often a member buys; members without repeat purchases are predicted the
population's mean spend.

`holdout_report` checks the models on a history: fit on what happened up to a date, predict the
purchases of the period after it, compare with what did happen. `simulate_transactions` draws
histories from known parameters (the models' own generative story), for tests and the demo.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import xarray
from loyalty_kit.errors import FailedPrecondition
from pymc_extras.prior import Prior
from pymc_marketing.clv import (
    BetaGeoModel,
    GammaGammaModel,
    customer_lifetime_value,
    rfm_summary,
    rfm_train_test_split,
)

from loyalty_insights.domain.clv_fits import HoldoutGroup, holdout_groups

MEMBER, AT, AMOUNT = "member_id", "occurred_at", "amount"
"""The columns of a transaction history: one row per purchase."""

SUMMARY_COLUMNS = ("member_id", "frequency", "recency", "T", "monetary_value")
_LIBRARY_ID = "customer_id"
_DAY = "D"


class NotEnoughHistory(FailedPrecondition):
    reason = "NOT_ENOUGH_HISTORY"


@dataclass(frozen=True, slots=True)
class PurchaseParameters:
    """BG/NBD, time in days: purchase rates are Gamma(shape r, rate alpha) across members;
    after each repeat purchase a member leaves with a probability that is Beta(a, b) across
    members."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True, slots=True)
class SpendParameters:
    """Gamma-Gamma: a purchase's spend is Gamma(shape p, rate nu), nu being Gamma(shape q,
    rate v) across members."""

    p: float
    q: float
    v: float

    @property
    def mean_spend(self) -> float:
        """The population's mean spend per purchase, p v / (q - 1) (infinite for q <= 1)."""
        return self.p * self.v / (self.q - 1) if self.q > 1 else math.inf


def summarise(transactions: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Each member's summary at `as_of` (`SUMMARY_COLUMNS` and `historical_value`) from their
    transactions up to that day; members who bought nothing by then are left out."""
    summary = _renamed(
        rfm_summary(
            transactions,
            MEMBER,
            AT,
            monetary_value_col=AMOUNT,
            observation_period_end=as_of,
            time_unit=_DAY,
        )
    )
    historical = transactions.loc[transactions[AT] <= _end_of_day(as_of)].groupby(MEMBER)[AMOUNT]
    summary["historical_value"] = summary[MEMBER].map(historical.sum()).fillna(0.0).to_numpy()
    return summary


@dataclass(frozen=True)
class LifetimeValueModel:
    """Fitted models. Predictions take summaries like `summarise`'s, for the members fitted or
    any others, and answer in the order of the rows given."""

    purchase_model: BetaGeoModel
    spend_model: GammaGammaModel
    purchases: PurchaseParameters
    spend: SpendParameters

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        alive = self.purchase_model.expected_probability_alive(data=_for_library(summary))
        return _values(alive, summary)

    def expected_purchases(self, summary: pd.DataFrame, days: int | np.ndarray) -> np.ndarray:
        """Purchase days expected in the `days` after each member's `as_of`."""
        data = _for_library(summary)
        return _values(self.purchase_model.expected_purchases(data=data, future_t=days), summary)

    def expected_spend(self, summary: pd.DataFrame) -> np.ndarray:
        """Expected spend per future purchase: the member's mean, shrunk toward the population's
        the fewer repeat purchases they made."""
        spend = self.spend_model.expected_customer_spend(data=_for_library(summary))
        return _values(spend, summary)

    def predicted_value(
        self, summary: pd.DataFrame, months: int = 12, monthly_discount_rate: float = 0.0
    ) -> np.ndarray:
        """Spend expected in the next `months` (of 30 days), discounted monthly if asked."""
        data = _for_library(summary).assign(future_spend=self.expected_spend(summary))
        value = customer_lifetime_value(
            transaction_model=self.purchase_model,
            data=data,
            future_t=months,
            discount_rate=monthly_discount_rate,
            time_unit=_DAY,
        )
        return _values(value, summary)

    def new_member_value(self, months: int = 12) -> float:
        """What a member who has not bought yet is expected to spend in the next `months`
        (of 30 days): the purchases the BG/NBD model expects of a new customer times the
        population's mean spend per purchase."""
        one = pd.DataFrame({_LIBRARY_ID: ["new"], "frequency": [0], "recency": [0], "T": [0]})
        purchases = self.purchase_model.expected_purchases_new_customer(data=one, t=30 * months)
        draws = [d for d in ("chain", "draw") if d in purchases.dims]
        expected = float(np.asarray(purchases.mean(draws) if draws else purchases).reshape(-1)[0])
        return expected * self.spend.mean_spend

    def predict(self, summary: pd.DataFrame, months: int = 12) -> pd.DataFrame:
        """Per member: historical value (when the summary has it), probability alive, expected
        purchases and predicted value over `months`, expected spend per purchase."""
        days = 30 * months
        out = pd.DataFrame({MEMBER: summary[MEMBER].to_numpy()})
        if "historical_value" in summary:
            out["historical_value"] = summary["historical_value"].to_numpy()
        out["probability_alive"] = self.probability_alive(summary)
        out["expected_purchases"] = self.expected_purchases(summary, days)
        out["expected_spend"] = self.expected_spend(summary)
        out["predicted_value"] = self.predicted_value(summary, months)
        return out


def fit(summary: pd.DataFrame) -> LifetimeValueModel:
    """Fit BG/NBD on every member's summary and Gamma-Gamma on those with repeat purchases."""
    data = _for_library(summary)
    repeat = data.loc[(data["frequency"] > 0) & (data["monetary_value"] > 0)]
    if len(data) < 2 or len(repeat) < 2:
        raise NotEnoughHistory(
            f"lifetime value needs members with repeat purchases: {len(data)} members, "
            f"{len(repeat)} with repeat purchases",
            metadata={"members": str(len(data)), "repeat_members": str(len(repeat))},
        )
    flat = Prior("HalfFlat")
    purchase_model = BetaGeoModel(model_config={"r": flat, "alpha": flat, "a": flat, "b": flat})
    spend_model = GammaGammaModel(model_config={"p": flat, "q": flat, "v": flat})
    with warnings.catch_warnings():
        # pytensor warns once per process that it found no BLAS to link against; numpy's is used.
        warnings.filterwarnings("ignore", message=".*BLAS.*", category=UserWarning)
        purchase_model.fit(data=data, method="map", progressbar=False)
        spend_model.fit(data=repeat.reset_index(drop=True), method="map", progressbar=False)
    purchases = PurchaseParameters(*(_scalar(purchase_model, k) for k in ("r", "alpha", "a", "b")))
    spend = SpendParameters(*(_scalar(spend_model, k) for k in ("p", "q", "v")))
    return LifetimeValueModel(purchase_model, spend_model, purchases, spend)


@dataclass(frozen=True, slots=True)
class HoldoutReport:
    """Models fitted on the calibration period, judged on the hold-out period after it, over
    the members who had bought by the calibration's end."""

    members: int
    holdout_days: int
    purchases: PurchaseParameters
    spend: SpendParameters
    mean_absolute_error: float
    """Purchase days per member, predicted against actual."""
    root_mean_squared_error: float
    baseline_mean_absolute_error: float
    """The error when every member is predicted the same, the mean actual purchases per member:
    what the models must beat to tell members apart."""
    predicted_purchases: float
    actual_purchases: int
    predicted_value: float
    actual_value: float
    groups: tuple[HoldoutGroup, ...] = ()
    """The members by calibration repeat purchase days, predicted against actual."""

    @property
    def purchases_error(self) -> float:
        """Total predicted purchases against actual, relative (0.05 = 5 % too many)."""
        return (
            self.predicted_purchases / self.actual_purchases - 1
            if self.actual_purchases
            else math.inf
        )


def holdout_report(
    transactions: pd.DataFrame, calibration_end: datetime, holdout_end: datetime
) -> HoldoutReport:
    """Fit on transactions up to `calibration_end`, predict each member's purchases up to
    `holdout_end`, and report the error. Members whose first purchase falls in the hold-out
    period are not counted (the models predict only members they know)."""
    if not calibration_end < holdout_end:
        raise ValueError(f"the hold-out period must end ({holdout_end}) after {calibration_end}")
    try:
        split = rfm_train_test_split(
            transactions,
            MEMBER,
            AT,
            train_period_end=calibration_end,
            test_period_end=holdout_end,
            time_unit=_DAY,
            monetary_value_col=AMOUNT,
        )
    except ValueError as error:  # no transaction in one of the periods
        raise NotEnoughHistory(str(error).strip()) from error
    actual_value = split["test_frequency"] * split["test_monetary_value"]
    return judge(
        _renamed(split),
        split["test_frequency"].to_numpy(dtype=float),
        actual_value.to_numpy(dtype=float),
        int(split["test_T"].iloc[0]),
    )


def judge(
    calibration: pd.DataFrame,
    actual_purchases: np.ndarray,
    actual_value: np.ndarray,
    holdout_days: int,
) -> HoldoutReport:
    """Fit on the members' summaries at the calibration's end and compare the purchases they
    are predicted to make in the `holdout_days` after it with what they did make there
    (`actual_purchases`: purchase days; `actual_value`: spend), member by member in the
    summaries' row order."""
    model = fit(calibration)
    predicted = model.expected_purchases(calibration, holdout_days)
    actual = np.asarray(actual_purchases, dtype=float)
    miss = predicted - actual
    return HoldoutReport(
        members=len(calibration),
        holdout_days=holdout_days,
        purchases=model.purchases,
        spend=model.spend,
        mean_absolute_error=float(np.mean(np.abs(miss))),
        root_mean_squared_error=float(np.sqrt(np.mean(miss**2))),
        baseline_mean_absolute_error=float(np.mean(np.abs(actual - actual.mean()))),
        predicted_purchases=float(predicted.sum()),
        actual_purchases=int(actual.sum()),
        predicted_value=float((predicted * model.expected_spend(calibration)).sum()),
        actual_value=float(np.sum(actual_value)),
        groups=holdout_groups(
            calibration["frequency"].astype(int).tolist(),
            predicted.tolist(),
            actual.astype(int).tolist(),
        ),
    )


def simulate_transactions(
    members: int,
    purchases: PurchaseParameters,
    spend: SpendParameters,
    start: datetime,
    end: datetime,
    *,
    first_purchases_until: datetime | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A transaction history drawn from the models' own story: each member's first purchase at
    a uniform time in `[start, first_purchases_until]` (default `end`); then purchases at
    their Gamma-drawn rate, leaving after each repeat purchase with their Beta-drawn probability,
    until `end`; each purchase's amount Gamma-drawn around the member's own mean spend, in
    cents. Member ids are `m0`, `m1`, ..."""
    rng = np.random.default_rng(seed)
    last_first = first_purchases_until or end
    if not start <= last_first <= end:
        raise ValueError("first purchases fall between the start and the end")
    rate = rng.gamma(purchases.r, 1 / purchases.alpha, members)
    leave = rng.beta(purchases.a, purchases.b, members)
    nu = rng.gamma(spend.q, 1 / spend.v, members)
    horizon = (end - start) / pd.Timedelta(days=1)
    first = rng.uniform(0, (last_first - start) / pd.Timedelta(days=1), members)
    who, when = [np.arange(members)], [first]
    at = first.copy()
    buying = np.arange(members)
    while buying.size:
        at_next = at[buying] + rng.exponential(1 / rate[buying])
        bought = at_next < horizon
        buying, at_next = buying[bought], at_next[bought]
        at[buying] = at_next
        who.append(buying)
        when.append(at_next)
        buying = buying[rng.random(buying.size) >= leave[buying]]
    member = np.concatenate(who)
    amount = np.round(rng.gamma(spend.p, 1 / nu[member]), 2)
    history = pd.DataFrame(
        {
            MEMBER: np.char.add("m", member.astype(str)),
            AT: pd.Timestamp(start) + pd.to_timedelta(np.concatenate(when), unit="D"),
            AMOUNT: np.maximum(amount, 0.01),
        }
    )
    return history.sort_values([MEMBER, AT], ignore_index=True)


def _renamed(summary: pd.DataFrame) -> pd.DataFrame:
    kept = [c for c in summary.columns if c not in ("test_frequency", "test_monetary_value")]
    return (
        summary[kept].rename(columns={_LIBRARY_ID: MEMBER}).drop(columns="test_T", errors="ignore")
    )


def _for_library(summary: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in SUMMARY_COLUMNS if c not in summary]
    if missing:
        raise ValueError(f"a member summary needs columns {missing}")
    return summary.loc[:, list(SUMMARY_COLUMNS)].rename(columns={MEMBER: _LIBRARY_ID})


def _values(prediction: xarray.DataArray, summary: pd.DataFrame) -> np.ndarray:
    """A per-member prediction of a MAP fit (one chain, one draw) as a plain array in the
    summary's row order (the library may answer in its own order)."""
    draws = [d for d in ("chain", "draw") if d in prediction.dims]
    per_member = prediction.mean(draws) if draws else prediction
    ordered = per_member.sel({_LIBRARY_ID: summary[MEMBER].to_numpy()})
    return np.asarray(ordered.to_numpy(), dtype=float).reshape(-1)


def _scalar(model: BetaGeoModel | GammaGammaModel, name: str) -> float:
    return float(model.fit_result[name].values.mean())


def _end_of_day(moment: datetime) -> pd.Timestamp:
    return pd.Timestamp(moment).normalize() + pd.Timedelta(days=1) - pd.Timedelta(1, unit="ns")
