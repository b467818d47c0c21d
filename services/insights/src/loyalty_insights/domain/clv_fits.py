"""Lifetime value as a served figure: a fit of the models (`clv.py`) over every member's
purchase summary, its life (pending, running, succeeded or failed), when the schedule asks for
the next one, and the figure read from the predictions the last successful fit stored."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum

from loyalty_kit.errors import FieldViolation, InvalidArgument, NotFound

FIT = "lifetimeValueFits/"
DEFAULT_HOLDOUT_DAYS = 180
MAX_HOLDOUT_DAYS = 3650
PREDICTION_MONTHS = 12
DECILES = 10


class FitState(Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Parameters:
    """BG/NBD's r, alpha, a, b and Gamma-Gamma's p, q, v (time in days)."""

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float


HOLDOUT_GROUPS = 8  # members by repeat purchase days in the calibration: 0, 1, ..., 6, 7 or more


@dataclass(frozen=True)
class HoldoutGroup:
    """The members of a hold-out report who made `repeat_purchases` repeat purchase days in
    the calibration period (`and_more`: that many or more), with their predicted and actual
    purchase days in the hold-out period, in all: how the models do member by member, for
    light and heavy buyers apart."""

    repeat_purchases: int
    and_more: bool
    members: int
    predicted_purchases: float
    actual_purchases: int


def holdout_groups(
    repeat_purchases: Sequence[int], predicted: Sequence[float], actual: Sequence[int]
) -> tuple[HoldoutGroup, ...]:
    """The members (one per position of the three sequences) grouped by their calibration
    repeat purchase days, the last group holding `HOLDOUT_GROUPS - 1` or more; groups without
    members left out."""
    last = HOLDOUT_GROUPS - 1
    sums: dict[int, list[float]] = {}
    for repeats, p, a in zip(repeat_purchases, predicted, actual, strict=True):
        kept = sums.setdefault(min(int(repeats), last), [0, 0.0, 0])
        kept[0] += 1
        kept[1] += float(p)
        kept[2] += int(a)
    return tuple(
        HoldoutGroup(k, k == last, int(n), float(p), int(a))
        for k, (n, p, a) in sorted(sums.items())
    )


@dataclass(frozen=True)
class Holdout:
    """The report of the models fitted on the purchases before `calibration_end`, judged on
    those from it to `holdout_end` (spend in the fit's currency)."""

    calibration_end: datetime
    holdout_end: datetime
    members: int
    predicted_purchases: float
    actual_purchases: int
    predicted_value: Decimal
    actual_value: Decimal
    mean_absolute_error: float
    baseline_mean_absolute_error: float
    root_mean_squared_error: float
    groups: tuple[HoldoutGroup, ...] = ()


@dataclass
class LifetimeValueFit:
    fit_id: str
    scheduled: bool
    state: FitState
    created_at: datetime
    as_of: datetime
    holdout_days: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    members: int = 0
    members_done: int = 0
    currency: str = ""
    parameters: Parameters | None = None
    holdout: Holdout | None = None
    error: str = ""

    @property
    def name(self) -> str:
        return FIT + self.fit_id

    @property
    def calibration_end(self) -> datetime:
        return self.as_of - timedelta(days=self.holdout_days)


def holdout_days_of(days: int) -> int:
    """A request's hold-out length (0: the default), else INVALID_ARGUMENT."""
    if days < 0 or days > MAX_HOLDOUT_DAYS:
        raise InvalidArgument.of(
            [FieldViolation("holdout_days", f"0 (the default, 180) to {MAX_HOLDOUT_DAYS} days")]
        )
    return days or DEFAULT_HOLDOUT_DAYS


class FitNotFound(NotFound):
    reason = "LIFETIME_VALUE_FIT_NOT_FOUND"


def fit_id_of(name: str) -> str:
    """The ID in "lifetimeValueFits/{id}", else INVALID_ARGUMENT naming `name`."""
    fit_id = name.removeprefix(FIT)
    if not name.startswith(FIT) or not fit_id or "/" in fit_id or len(fit_id) > 64:
        raise InvalidArgument.of([FieldViolation("name", "a fit: lifetimeValueFits/{id}")])
    return fit_id


def fit_due(
    last_asked: datetime | None, running_since: datetime, now: datetime, every: float
) -> bool:
    """Whether the schedule asks for a fit now: `every` seconds after the last fit was asked
    for (by the schedule or by hand), or, before any, after the replica started
    (`running_since`): a fresh deployment fits a day after it starts, or when asked."""
    since = last_asked if last_asked is not None else running_since
    return (now - since).total_seconds() >= every


@dataclass(frozen=True)
class MemberPrediction:
    """A member's lifetime value as a fit stores it: None where the model gives none (the
    probability of being alive of a member who never bought)."""

    member_id: str
    historical_value: Decimal
    predicted_value: Decimal | None
    probability_alive: float | None


CENT = Decimal("0.01")
MAX_VALUE = 1e15  # beyond any member's spend: a model that diverged, not a prediction


def cents(value: float | None) -> Decimal | None:
    """A prediction in money, to the cent, never negative (None for none, or a value the model
    could not give)."""
    if value is None or not math.isfinite(value) or abs(value) > MAX_VALUE:
        return None
    return Decimal(max(value, 0.0)).quantize(CENT)


@dataclass(frozen=True)
class Totals:
    members: int
    historical_value: Decimal
    predicted_value: Decimal
    mean_probability_alive: float

    @property
    def mean_historical_value(self) -> Decimal:
        return self.historical_value / self.members if self.members else Decimal(0)

    @property
    def mean_predicted_value(self) -> Decimal:
        return self.predicted_value / self.members if self.members else Decimal(0)


@dataclass(frozen=True)
class Decile:
    decile: int  # 1 (lowest predicted values) to 10
    members: int
    min_predicted_value: Decimal
    max_predicted_value: Decimal
    predicted_value: Decimal


@dataclass(frozen=True)
class LifetimeValue:
    """The figure: over the members (a unit's or every one) of the last successful fit."""

    fit: LifetimeValueFit | None
    totals: Totals
    deciles: list[Decile]
    members: list[MemberPrediction] = field(default_factory=list)  # one page
    last: tuple[str, str] | None = None  # (predicted value, member) the next page starts after
