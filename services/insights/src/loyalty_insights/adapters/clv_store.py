"""Lifetime value's tables: the fits (`clv_fits`), the predictions a running fit stages
(`clv_predictions`) and their place in `member_figures`, and the members' purchase summaries
the models are fitted on, read from the facts in SQL (the pandas summary of the library takes
50 s over 4.7 million purchases; this, a few)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_insights.adapters.figures import OWNERS
from loyalty_insights.adapters.locks import SCHEDULE_LOCK
from loyalty_insights.domain.clv_fits import (
    Decile,
    FitState,
    Holdout,
    HoldoutGroup,
    LifetimeValueFit,
    MemberPrediction,
    Parameters,
    Totals,
)

# Members' purchases, refunds and imported orders before $1 ($3: those kinds), in the base
# currency $4 ('' any), by the member they count for (merges followed).
_BOUGHT = (
    OWNERS
    + """, bought AS (
    SELECT coalesce(o.owner, a.member_id) AS member_id, a.kind,
           (a.occurred_at AT TIME ZONE 'UTC')::date AS day, a.occurred_at, a.spend
    FROM activity a LEFT JOIN owners o ON o.member_id = a.member_id
    WHERE a.occurred_at < $1 AND a.kind = ANY($3::text[]) AND ($4 = '' OR a.currency = $4)
)"""
)

# Each member's summary at $5 (purchase days before it, UTC days: purchases of a day count as
# one; $2 the purchase kinds): `frequency` repeat purchase days, `recency` days from the first
# to the last, `t` days from the first to $5's day, `monetary_value` the mean spend of the
# repeat days, `historical_value` all spend before $5 (refunds deducted); and what each bought
# from $5 to $1 (the hold-out period; nothing when $5 = $1). Erased members are left out.
_SUMMARIES = (
    _BOUGHT
    + """, days AS (
    SELECT member_id, day, sum(spend) AS spend
    FROM bought WHERE kind = ANY($2::text[]) AND occurred_at < $5 GROUP BY member_id, day
), spans AS (
    SELECT member_id, min(day) AS first_day, max(day) AS last_day, count(*) - 1 AS frequency
    FROM days GROUP BY member_id
), summary AS (
    SELECT s.member_id, s.frequency, s.last_day - s.first_day AS recency,
           (($5::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date - s.first_day
               AS t,
           greatest(coalesce(avg(d.spend) FILTER (WHERE d.day > s.first_day), 0), 0)
               AS monetary_value
    FROM spans s JOIN days d ON d.member_id = s.member_id
    GROUP BY s.member_id, s.frequency, s.first_day, s.last_day
), later AS (
    SELECT member_id, count(DISTINCT day) AS purchases, sum(spend) AS spend
    FROM bought WHERE kind = ANY($2::text[]) AND occurred_at >= $5 GROUP BY member_id
), historical AS (
    SELECT member_id, sum(spend) AS value FROM bought WHERE occurred_at < $5 GROUP BY member_id
)
SELECT s.member_id, s.frequency, s.recency, s.t, s.monetary_value,
       coalesce(h.value, 0) AS historical_value,
       coalesce(l.purchases, 0) AS later_purchases, coalesce(l.spend, 0) AS later_spend
FROM summary s
LEFT JOIN historical h ON h.member_id = s.member_id
LEFT JOIN later l ON l.member_id = s.member_id
WHERE NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = s.member_id)
ORDER BY s.member_id
"""
)

# Members registered before $1 (merges followed) who bought nothing before it, not erased.
_NEWCOMERS = (
    OWNERS
    + """, registered AS (
    SELECT DISTINCT coalesce(o.owner, r.member_id) AS member_id
    FROM registrations r LEFT JOIN owners o ON o.member_id = r.member_id
    WHERE r.registered_at < $1
)
SELECT g.member_id FROM registered g
WHERE NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = g.member_id)
ORDER BY g.member_id
"""
)

_FIT_COLUMNS = (
    "fit_id, scheduled, state, created_at, started_at, finished_at, as_of, holdout_days, "
    "members, members_done, currency, parameters, holdout, error"
)

# The members of the figure: every one with a prediction, or those active at unit $1 (the units
# the members' figures keep, merges followed); erased members never.
_CHOSEN = """
WITH chosen AS (
    SELECT f.member_id, f.historical_value, f.predicted_value_12m, f.p_alive
    FROM member_figures f
    WHERE f.predicted_value_12m IS NOT NULL AND ($1 = '' OR $1 = ANY(f.units))
      AND NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = f.member_id)
)"""

_TOTALS = (
    _CHOSEN
    + """
SELECT count(*) AS members, coalesce(sum(historical_value), 0) AS historical_value,
       coalesce(sum(predicted_value_12m), 0) AS predicted_value,
       coalesce(avg(p_alive), 0) AS mean_p_alive
FROM chosen
"""
)

_DECILES = (
    _CHOSEN
    + """, ranked AS (
    SELECT predicted_value_12m,
           ntile($2::int) OVER (ORDER BY predicted_value_12m, member_id) AS decile
    FROM chosen
)
SELECT decile, count(*) AS members, min(predicted_value_12m) AS low,
       max(predicted_value_12m) AS high, sum(predicted_value_12m) AS total
FROM ranked GROUP BY decile ORDER BY decile
"""
)

# A page by predicted value, highest first (ties by member ID, descending), after ($3, $4).
_PAGE = (
    _CHOSEN
    + """
SELECT member_id, historical_value, predicted_value_12m, p_alive FROM chosen
WHERE $2::numeric IS NULL OR (predicted_value_12m, member_id) < ($2::numeric, $3::text)
ORDER BY predicted_value_12m DESC, member_id DESC LIMIT $4
"""
)


def _json(found: Any) -> Any:
    """A jsonb value: decoded by the connection's codec (SQLAlchemy's), or text without one."""
    return json.loads(found) if isinstance(found, str | bytes) else found


def _parameters(found: Any) -> Parameters | None:
    return Parameters(**_json(found)) if found else None


def _holdout(found: Any) -> Holdout | None:
    if not found:
        return None
    kept = _json(found)
    return Holdout(
        calibration_end=datetime.fromisoformat(kept["calibration_end"]),
        holdout_end=datetime.fromisoformat(kept["holdout_end"]),
        members=int(kept["members"]),
        predicted_purchases=float(kept["predicted_purchases"]),
        actual_purchases=int(kept["actual_purchases"]),
        predicted_value=Decimal(kept["predicted_value"]),
        actual_value=Decimal(kept["actual_value"]),
        mean_absolute_error=float(kept["mean_absolute_error"]),
        baseline_mean_absolute_error=float(kept["baseline_mean_absolute_error"]),
        root_mean_squared_error=float(kept["root_mean_squared_error"]),
        groups=tuple(HoldoutGroup(**group) for group in kept.get("groups", ())),
    )


def _holdout_json(report: Holdout) -> str:
    return json.dumps(
        {
            "calibration_end": report.calibration_end.isoformat(),
            "holdout_end": report.holdout_end.isoformat(),
            "members": report.members,
            "predicted_purchases": report.predicted_purchases,
            "actual_purchases": report.actual_purchases,
            "predicted_value": str(report.predicted_value),
            "actual_value": str(report.actual_value),
            "mean_absolute_error": report.mean_absolute_error,
            "baseline_mean_absolute_error": report.baseline_mean_absolute_error,
            "root_mean_squared_error": report.root_mean_squared_error,
            "groups": [dataclasses.asdict(group) for group in report.groups],
        }
    )


def _fit(row: Any) -> LifetimeValueFit:
    return LifetimeValueFit(
        fit_id=row["fit_id"],
        scheduled=row["scheduled"],
        state=FitState(row["state"]),
        created_at=row["created_at"],
        as_of=row["as_of"],
        holdout_days=int(row["holdout_days"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        members=int(row["members"]),
        members_done=int(row["members_done"]),
        currency=row["currency"],
        parameters=_parameters(row["parameters"]),
        holdout=_holdout(row["holdout"]),
        error=row["error"],
    )


class LifetimeValueStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _conn(self) -> Any:
        return await driver_connection(self.session)

    # --- fits -----------------------------------------------------------------------------------

    async def add_fit(self, fit: LifetimeValueFit) -> None:
        await (await self._conn()).execute(
            "INSERT INTO clv_fits (fit_id, scheduled, state, created_at, as_of, holdout_days) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            fit.fit_id,
            fit.scheduled,
            fit.state.value,
            fit.created_at,
            fit.as_of,
            fit.holdout_days,
        )

    async def fit(self, fit_id: str) -> LifetimeValueFit | None:
        row = await (await self._conn()).fetchrow(
            f"SELECT {_FIT_COLUMNS} FROM clv_fits WHERE fit_id = $1", fit_id
        )
        return _fit(row) if row is not None else None

    async def lock_schedule(self) -> None:
        """Replicas asking for a scheduled fit take turns (till the transaction ends), so one
        asks and the others see its fit."""
        await (await self._conn()).execute("SELECT pg_advisory_xact_lock($1)", SCHEDULE_LOCK)

    async def last_asked(self) -> datetime | None:
        """When the latest fit was asked for (None: never)."""
        found: datetime | None = await (await self._conn()).fetchval(
            "SELECT max(created_at) FROM clv_fits"
        )
        return found

    async def last_succeeded(self) -> LifetimeValueFit | None:
        """The fit whose predictions `member_figures` holds."""
        row = await (await self._conn()).fetchrow(
            f"SELECT {_FIT_COLUMNS} FROM clv_fits WHERE state = 'succeeded' "
            "ORDER BY finished_at DESC LIMIT 1"
        )
        return _fit(row) if row is not None else None

    async def next_pending(self) -> LifetimeValueFit | None:
        row = await (await self._conn()).fetchrow(
            f"SELECT {_FIT_COLUMNS} FROM clv_fits WHERE state = 'pending' "
            "ORDER BY created_at, fit_id LIMIT 1 FOR UPDATE"
        )
        return _fit(row) if row is not None else None

    async def interrupted(self, error: str, now: datetime) -> list[str]:
        """Fits left running by a replica that stopped or died (only the holder of the fit lock
        calls this, so none is running elsewhere): failed, their staged rows dropped."""
        conn = await self._conn()
        ids = [
            r["fit_id"]
            for r in await conn.fetch(
                "UPDATE clv_fits SET state = 'failed', error = $1, finished_at = $2 "
                "WHERE state = 'running' RETURNING fit_id",
                error,
                now,
            )
        ]
        if ids:
            await conn.execute("DELETE FROM clv_predictions WHERE fit_id = ANY($1::text[])", ids)
        return ids

    async def save_fit(self, fit: LifetimeValueFit) -> None:
        await (await self._conn()).execute(
            "UPDATE clv_fits SET state = $2, started_at = $3, finished_at = $4, members = $5, "
            "members_done = $6, currency = $7, parameters = $8::jsonb, holdout = $9::jsonb, "
            "error = $10 WHERE fit_id = $1",
            fit.fit_id,
            fit.state.value,
            fit.started_at,
            fit.finished_at,
            fit.members,
            fit.members_done,
            fit.currency,
            json.dumps(vars(fit.parameters)) if fit.parameters else None,
            _holdout_json(fit.holdout) if fit.holdout else None,
            fit.error,
        )

    # --- the members' summaries -----------------------------------------------------------------

    async def summaries(
        self,
        until: datetime,
        holdout_from: datetime,
        purchase_kinds: Sequence[str],
        spend_kinds: Sequence[str],
        currency: str,
    ) -> pd.DataFrame:
        """Each member's summary at `holdout_from` (purchases before it) with what they bought
        from it to `until` (`later_purchases` days, `later_spend`); with `holdout_from` =
        `until`, the summaries at `until`."""
        rows = await (await self._conn()).fetch(
            _SUMMARIES, until, list(purchase_kinds), list(spend_kinds), currency, holdout_from
        )
        return pd.DataFrame(
            {
                "member_id": [r["member_id"] for r in rows],
                "frequency": np.array([r["frequency"] for r in rows], dtype=np.int64),
                "recency": np.array([r["recency"] for r in rows], dtype=np.int64),
                "T": np.array([r["t"] for r in rows], dtype=np.int64),
                "monetary_value": np.array([float(r["monetary_value"]) for r in rows], dtype=float),
                "historical_value": [Decimal(r["historical_value"]) for r in rows],
                "later_purchases": np.array([r["later_purchases"] for r in rows], dtype=float),
                "later_spend": np.array([float(r["later_spend"]) for r in rows], dtype=float),
            }
        )

    async def newcomers(self, until: datetime) -> list[str]:
        """Members registered before `until` who bought nothing before it (some may have: the
        caller leaves out those it summarised)."""
        rows = await (await self._conn()).fetch(_NEWCOMERS, until)
        return [r["member_id"] for r in rows]

    # --- predictions ----------------------------------------------------------------------------

    async def stage(self, fit_id: str, predictions: Sequence[MemberPrediction]) -> None:
        await (await self._conn()).execute(
            "INSERT INTO clv_predictions "
            "(fit_id, member_id, historical_value, predicted_value_12m, p_alive) "
            "SELECT $1, p.* FROM unnest($2::text[], $3::numeric[], $4::numeric[], "
            "$5::double precision[]) AS p ON CONFLICT DO NOTHING",
            fit_id,
            [p.member_id for p in predictions],
            [p.historical_value for p in predictions],
            [p.predicted_value for p in predictions],
            [p.probability_alive for p in predictions],
        )

    async def publish(self, fit_id: str, now: datetime) -> None:
        """The fit's staged predictions become the members' (rows added for members the
        refresh has not met yet); members it has none for lose the last fit's."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO member_figures "
            "(member_id, updated_at, historical_value, predicted_value_12m, p_alive, clv_fit_id) "
            "SELECT p.member_id, $2, p.historical_value, p.predicted_value_12m, p.p_alive, "
            "p.fit_id FROM clv_predictions p WHERE p.fit_id = $1 "
            "AND NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = p.member_id) "
            "ON CONFLICT (member_id) DO UPDATE SET historical_value = excluded.historical_value, "
            "predicted_value_12m = excluded.predicted_value_12m, p_alive = excluded.p_alive, "
            "clv_fit_id = excluded.clv_fit_id",
            fit_id,
            now,
        )
        await conn.execute(
            "UPDATE member_figures SET historical_value = NULL, predicted_value_12m = NULL, "
            "p_alive = NULL, clv_fit_id = NULL WHERE clv_fit_id IS NOT NULL AND clv_fit_id <> $1",
            fit_id,
        )
        await conn.execute("DELETE FROM clv_predictions WHERE fit_id = $1", fit_id)

    async def drop_staged(self, fit_id: str) -> None:
        await (await self._conn()).execute("DELETE FROM clv_predictions WHERE fit_id = $1", fit_id)

    # --- the figure -----------------------------------------------------------------------------

    async def totals(self, unit: str) -> Totals:
        row = await (await self._conn()).fetchrow(_TOTALS, unit)
        return Totals(
            int(row["members"]),
            Decimal(row["historical_value"]),
            Decimal(row["predicted_value"]),
            float(row["mean_p_alive"]),
        )

    async def deciles(self, unit: str, tiles: int) -> list[Decile]:
        rows = await (await self._conn()).fetch(_DECILES, unit, tiles)
        return [
            Decile(
                int(r["decile"]),
                int(r["members"]),
                Decimal(r["low"]),
                Decimal(r["high"]),
                Decimal(r["total"]),
            )
            for r in rows
        ]

    async def page(
        self,
        unit: str,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[MemberPrediction]:
        value, member = (Decimal(after[0]), after[1]) if after else (None, "")
        rows = await (await self._conn()).fetch(_PAGE, unit, value, member, limit)
        return [
            MemberPrediction(
                r["member_id"],
                Decimal(r["historical_value"] if r["historical_value"] is not None else 0),
                Decimal(r["predicted_value_12m"]),
                r["p_alive"],
            )
            for r in rows
        ]
