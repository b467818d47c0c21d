"""The lifetime value fitter, a background job in every replica: on the schedule
(`clv_interval_seconds`) it asks for a fit, and it carries out the fits asked for, one at a
time across replicas (the replica holding the fit lock does; the others look again every
`clv_poll_seconds` or when FitLifetimeValue wakes them).

A fit reads every member's purchase summary from the facts, has the models fitted in the
worker process (the event loop goes on serving), stages each member's prediction in batches
(`members_done` moves), and puts them into `member_figures` in one last transaction with the
fit's success: readers see the last fit's predictions or the new one's, never a mix, and a fit
that fails leaves the last one's as they were."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from decimal import Decimal

import numpy as np
import pandas as pd
from loyalty_kit.clock import Clock
from loyalty_kit.jobs import log_round_failed
from loyalty_kit.logs import get_logger
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty_insights.adapters.clv_process import FitFailed, FitOutcome, ModelProcess
from loyalty_insights.adapters.locks import FIT_LOCK, held
from loyalty_insights.domain.clv_fits import (
    DEFAULT_HOLDOUT_DAYS,
    PREDICTION_MONTHS,
    FitState,
    Holdout,
    LifetimeValueFit,
    MemberPrediction,
    Parameters,
    cents,
    fit_due,
)
from loyalty_insights.domain.crossunit import ORDER, PURCHASE, SPENDING
from loyalty_insights.service_layer import lifetime_value
from loyalty_insights.service_layer.uow import InsightsUnitOfWork

log = get_logger("loyalty.insights.clv")
PURCHASES = (PURCHASE, ORDER)
INTERRUPTED = "interrupted: the replica fitting it stopped"


class FitError(Exception):
    """A fit that cannot go on (recorded as its error)."""


class LifetimeValueFitter:
    def __init__(
        self,
        uow: Callable[..., InsightsUnitOfWork],
        clock: Clock,
        engine: Callable[[], AsyncEngine],
        *,
        interval_seconds: float,
        poll_seconds: float,
        batch_size: int,
        process: ModelProcess | None = None,
    ) -> None:
        self.uow, self.clock, self.engine = uow, clock, engine
        self.interval_seconds, self.poll_seconds = interval_seconds, poll_seconds
        self.batch_size = batch_size
        self.process = process or ModelProcess()
        self.wake = asyncio.Event()
        self.started = clock()

    async def serve(self, stopping: asyncio.Event) -> None:
        """The job: ask for the scheduled fit when due, carry out the fits waiting; again when
        woken or after a while."""
        try:
            while not stopping.is_set():
                self.wake.clear()
                try:
                    await self.schedule()
                    await self.run_waiting()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log_round_failed(log, "lifetime value fitter", error)
                waiting = asyncio.ensure_future(self.wake.wait())
                stop = asyncio.ensure_future(stopping.wait())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait(
                        (waiting, stop),
                        timeout=min(self.poll_seconds, self.interval_seconds),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                for task in (waiting, stop):
                    task.cancel()
        finally:
            self.process.close()

    async def schedule(self) -> None:
        """A scheduled fit, when the last fit was asked for an interval ago."""
        async with self.uow() as uow:
            await uow.clv.lock_schedule()
            now = self.clock()
            if fit_due(await uow.clv.last_asked(), self.started, now, self.interval_seconds):
                fit = await lifetime_value.ask_for_fit(
                    uow, now, DEFAULT_HOLDOUT_DAYS, now, scheduled=True
                )
                await uow.commit()
                log.info("lifetime value fit scheduled", fit=fit.name)

    async def run_waiting(self) -> None:
        """Every fit waiting, oldest first, if this replica holds the fit lock."""
        async with held(self.engine(), FIT_LOCK) as mine:
            if not mine:
                return
            async with self.uow() as uow:
                if await uow.clv.interrupted(INTERRUPTED, self.clock()):
                    await uow.commit()
            while (fit := await self._take()) is not None:
                await self.carry_out(fit)

    async def _take(self) -> LifetimeValueFit | None:
        async with self.uow() as uow:
            fit = await uow.clv.next_pending()
            if fit is None:
                return None
            fit.state, fit.started_at = FitState.RUNNING, self.clock()
            await uow.clv.save_fit(fit)
            await uow.commit()
            return fit

    async def carry_out(self, fit: LifetimeValueFit) -> None:
        try:
            await self._fit(fit)
        except asyncio.CancelledError:
            # The service stops: the next holder of the lock records the fit as interrupted.
            raise
        except Exception as error:
            fit.state, fit.finished_at = FitState.FAILED, self.clock()
            fit.error = str(error) if isinstance(error, FitError) else repr(error)
            async with self.uow() as uow:
                await uow.clv.drop_staged(fit.fit_id)
                await uow.clv.save_fit(fit)
                await uow.commit()
            log.warning("lifetime value fit failed", fit=fit.name, error=fit.error)

    async def _fit(self, fit: LifetimeValueFit) -> None:
        async with self.uow(read_only=True) as uow:
            programme = await uow.figures.programme_at(fit.as_of)
            fit.currency = programme[1] if programme else ""
            summary = await uow.clv.summaries(
                fit.as_of, fit.as_of, PURCHASES, SPENDING, fit.currency
            )
            calibration = await uow.clv.summaries(
                fit.as_of, fit.calibration_end, PURCHASES, SPENDING, fit.currency
            )
            bought = set(summary["member_id"])
            newcomers = [m for m in await uow.clv.newcomers(fit.as_of) if m not in bought]
        fit.members = len(summary) + len(newcomers)
        await self._save(fit)

        outcome = await self.process.fit(
            summary,
            calibration,
            calibration["later_purchases"].to_numpy(),
            calibration["later_spend"].to_numpy(),
            fit.holdout_days,
            PREDICTION_MONTHS,
        )
        if isinstance(outcome, FitFailed):
            raise FitError(outcome.error)
        fit.parameters = Parameters(*outcome.parameters)
        fit.holdout = _holdout(fit, outcome)
        if outcome.holdout_error:
            log.info("lifetime value fit without a hold-out report", error=outcome.holdout_error)
        await self._save(fit)

        for batch in _batches(_predictions(summary, newcomers, outcome), self.batch_size):
            async with self.uow() as uow:
                await uow.clv.stage(fit.fit_id, batch)
                fit.members_done += len(batch)
                await uow.clv.save_fit(fit)
                await uow.commit()
        async with self.uow() as uow:
            fit.state, fit.finished_at = FitState.SUCCEEDED, self.clock()
            await uow.clv.publish(fit.fit_id, fit.finished_at)
            await uow.clv.save_fit(fit)
            await uow.commit()
        log.info(
            "lifetime value fit succeeded",
            fit=fit.name,
            members=fit.members,
            seconds=round(
                (fit.finished_at - (fit.started_at or fit.finished_at)).total_seconds(), 1
            ),
        )

    async def _save(self, fit: LifetimeValueFit) -> None:
        async with self.uow() as uow:
            await uow.clv.save_fit(fit)
            await uow.commit()


def _holdout(fit: LifetimeValueFit, outcome: FitOutcome) -> Holdout | None:
    found = outcome.holdout
    if found is None:
        return None
    return Holdout(
        calibration_end=fit.calibration_end,
        holdout_end=fit.as_of,
        members=found.members,
        predicted_purchases=found.predicted_purchases,
        actual_purchases=found.actual_purchases,
        predicted_value=cents(found.predicted_value) or Decimal(0),
        actual_value=cents(found.actual_value) or Decimal(0),
        mean_absolute_error=found.mean_absolute_error,
        baseline_mean_absolute_error=found.baseline_mean_absolute_error,
        root_mean_squared_error=found.root_mean_squared_error,
        groups=found.groups,
    )


def _predictions(
    summary: pd.DataFrame, newcomers: Sequence[str], outcome: FitOutcome
) -> list[MemberPrediction]:
    """Each summarised member's prediction, then the members who never bought: the value the
    model predicts a new customer, no probability of being alive."""
    alive = np.asarray(outcome.probability_alive, dtype=float)
    value = np.asarray(outcome.predicted_value, dtype=float)
    made = [
        MemberPrediction(
            member,
            historical,
            cents(float(v)),
            float(a) if np.isfinite(a) else None,
        )
        for member, historical, v, a in zip(
            summary["member_id"], summary["historical_value"], value, alive, strict=True
        )
    ]
    newcomer = cents(outcome.new_member_value)
    made += [MemberPrediction(m, Decimal(0), newcomer, None) for m in newcomers]
    return made


def _batches(items: list[MemberPrediction], size: int) -> list[list[MemberPrediction]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
