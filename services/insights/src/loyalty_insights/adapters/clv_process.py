"""The lifetime value models fitted in a worker process of their own: pymc and pytensor are
heavy (10 s to import, seconds to minutes of CPU a fit), so the service's event loop and its
gRPC server go on answering while a fit runs. One process, started the first time a fit needs
it (`spawn`: never fork a process with threads and a loop) and kept for the next fits, so the
library is imported once and pytensor's compiled models are reused; it is shut down with the
service. What crosses to the process is the members' summaries (a DataFrame); what comes back
is plain numbers, or the error that stopped the fit as text (a domain error's own arguments do
not survive pickling)."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loyalty_insights.domain.clv_fits import HoldoutGroup

_SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class HoldoutNumbers:
    members: int
    predicted_purchases: float
    actual_purchases: int
    predicted_value: float
    actual_value: float
    mean_absolute_error: float
    baseline_mean_absolute_error: float
    root_mean_squared_error: float
    groups: tuple[HoldoutGroup, ...] = ()


@dataclass(frozen=True)
class FitOutcome:
    """What a fit found: parameters (r, alpha, a, b, p, q, v), the hold-out report (None when
    the calibration period had too little history to fit: `holdout_error` says why), each
    summarised member's probability of being alive and predicted value (in the summary's row
    order), and the value predicted for a member who has not bought yet."""

    parameters: tuple[float, ...]
    holdout: HoldoutNumbers | None
    holdout_error: str
    probability_alive: np.ndarray
    predicted_value: np.ndarray
    new_member_value: float


@dataclass(frozen=True)
class FitFailed:
    error: str


def fit_members(
    summary: pd.DataFrame,
    calibration: pd.DataFrame,
    actual_purchases: np.ndarray,
    actual_value: np.ndarray,
    holdout_days: int,
    months: int,
) -> FitOutcome | FitFailed:
    """In the worker process: the hold-out report on `calibration` (members' summaries at the
    calibration's end, with what each bought in the hold-out period), then the models fitted
    on every member's `summary` and their predictions over `months`."""
    from loyalty_insights.domain import clv  # imported once per process, here

    try:
        holdout, holdout_error = None, ""
        try:
            report = clv.judge(calibration, actual_purchases, actual_value, holdout_days)
            holdout = HoldoutNumbers(
                report.members,
                report.predicted_purchases,
                report.actual_purchases,
                report.predicted_value,
                report.actual_value,
                report.mean_absolute_error,
                report.baseline_mean_absolute_error,
                report.root_mean_squared_error,
                report.groups,
            )
        except clv.NotEnoughHistory as error:
            holdout_error = f"hold-out report: {error}"
        model = clv.fit(summary)
        p, s = model.purchases, model.spend
        return FitOutcome(
            (p.r, p.alpha, p.a, p.b, s.p, s.q, s.v),
            holdout,
            holdout_error,
            model.probability_alive(summary),
            model.predicted_value(summary, months),
            model.new_member_value(months),
        )
    except Exception as error:  # the service records it as the fit's error
        return FitFailed(f"{type(error).__name__}: {error}")


class ModelProcess:
    """The worker process that fits, one fit at a time."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def fit(
        self,
        summary: pd.DataFrame,
        calibration: pd.DataFrame,
        actual_purchases: np.ndarray,
        actual_value: np.ndarray,
        holdout_days: int,
        months: int,
    ) -> FitOutcome | FitFailed:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=_SPAWN)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._pool,
                fit_members,
                summary,
                calibration,
                actual_purchases,
                actual_value,
                holdout_days,
                months,
            )
        except BrokenProcessPool:
            self.close()  # the next fit starts a new process
            return FitFailed("the fitting process ended unexpectedly")

    def close(self) -> None:
        """Stop the process (a fit in it is abandoned)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
