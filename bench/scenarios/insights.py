"""Insights at a million members: dashboards, a full refresh, DuckDB and event-to-figure lag.

Every scenario reads the same facts (`bench/insights_data.py`: `--members` members, default
1,000,000, or `BENCH_INSIGHTS_MEMBERS`; 20 postings each), loaded once per run (or kept by a
server that outlives the run) before the first of them; the load's seconds are in `extra`,
not in what is measured. The figures are asked for the year before the history's end
(`insights_data.PERIOD`), group-wide.

- `raw-insights`: each figure's statements, the service's own SQL text (`FigureRows` of
  `adapters/figures.py` over a plain asyncpg connection: no gRPC, no session, no unit of work),
  plus hand-tuned minimal SQL for RFM and the liability; `BENCH_INSIGHTS_RUNS` (5) timed runs
  of each after one untimed. `extra.figures`: p50/p95 per figure.
- `insights-dashboards`: the same figures through the insights service's RPCs (start_service,
  consumers running, one channel, one call at a time); per figure p50/p95 against the 200 ms
  goal and its ratio to the raw statements' p50.
- `raw-insights-refresh` / `insights-refresh`: every figure once, back to back, raw and
  through the service; `_materialised_refresh` is where the service's own full refresh (of
  `member_figures`) is timed once it has one.
- `insights-duckdb`: the facts exported (`COPY ... TO STDOUT` as CSV, then Parquet) into an
  in-process DuckDB; the minimal RFM, liability and overlap queries timed in both engines.
- `insights-lag`: PointsEarned and LedgerPosted published to JetStream at
  `BENCH_INSIGHTS_RATE` (500) a second for `BENCH_INSIGHTS_LAG_SECONDS` (30) against the running
  service; per event, the time from its publish until its fact is in the facts tables.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import Message
from loyalty.common.v1 import money_pb2
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty.insights.v1 import insights_service_pb2_grpc
from loyalty.points.v1 import events_pb2 as points_events
from loyalty.points.v1 import points_service_pb2
from loyalty_insights.adapters.figures import FigureRows
from loyalty_insights.app import SPEC
from loyalty_insights.domain.rfm import RfmSegment
from loyalty_kit import events
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MSG_ID_HEADER
from loyalty_kit.server import RunningService, start_service
from loyalty_kit.timestamps import timestamp

from bench import insights_data
from bench.context import BenchContext
from bench.insights_data import PERIOD, Loaded
from bench.load import percentile
from bench.registry import Measurement, scenario

GOAL_MS = 200.0  # each dashboard query at 1,000,000 members (issue 18, "Speed")
LAG_GOAL_MS = 2000.0  # event to figure, p99, at 500 events/s
REFRESH_GOAL_S = 60.0  # every figure, 1,000,000 members and 20,000,000 postings
CALL_TIMEOUT = 900.0
GROUP_TEAM = Caller(unit="group", client_id="bench-insights", scopes=frozenset({"insights:group"}))
POLL_SECONDS = 0.01
LAG_DRAIN_SECONDS = 60.0  # after the last publish, at most this long for the last facts


def _members(ctx: BenchContext) -> int:
    return ctx.members or int(os.environ.get("BENCH_INSIGHTS_MEMBERS", "1000000"))


def _runs() -> int:
    return max(1, int(os.environ.get("BENCH_INSIGHTS_RUNS", "5")))


async def _facts(ctx: BenchContext) -> Loaded:
    """The run's facts, loaded by the first scenario that asks (kept ones reused)."""
    if "insights" not in ctx.shared:
        ctx.shared["insights"] = await insights_data.load(ctx.settings(), _members(ctx))
    loaded: Loaded = ctx.shared["insights"]
    return loaded


def _facts_extra(loaded: Loaded) -> dict[str, Any]:
    return {
        "members": loaded.members,
        "seed": loaded.seed,
        "load_seconds": round(loaded.seconds, 1),
        "load_reused": loaded.reused,
        "rows": loaded.rows,
        "period": [PERIOD[0].isoformat(), PERIOD[1].isoformat()],
    }


def _ms(values: list[float], q: float) -> float:
    return round(percentile(values, q), 1)


# --- the figures, raw: the service's SQL over a plain asyncpg connection ----------------------


class RawFigureRows(FigureRows):
    """The service's figure queries, each run on one plain asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.raw = conn

    async def _conn(self) -> Any:
        return self.raw


MINIMAL_RFM = """
WITH bought AS (
    SELECT member_id, count(*) AS frequency, sum(spend) AS monetary, max(occurred_at) AS last_at
    FROM activity
    WHERE occurred_at >= $1 AND occurred_at < $2 AND kind = 'purchase'
    GROUP BY member_id
), scored AS (
    SELECT ntile(5) OVER (ORDER BY last_at) AS r, ntile(5) OVER (ORDER BY frequency) AS f,
           ntile(5) OVER (ORDER BY monetary) AS m
    FROM bought
)
SELECT r, f, m, count(*) AS members FROM scored GROUP BY r, f, m
"""

# Outstanding points by issuing unit and expiry month, and the period's issued and redeemed,
# in one pass over the lot movements.
MINIMAL_LIABILITY = """
SELECT earned_unit, date_trunc('month', expires_at) AS expiry,
       sum(points) AS outstanding,
       sum(points) FILTER (WHERE kind = 'earn' AND posted_at >= $1) AS issued,
       sum(points) FILTER (WHERE kind = 'redeem' AND posted_at >= $1) AS redeemed,
       sum(points) FILTER (WHERE kind = 'expire' AND posted_at >= $1) AS expired
FROM lot_movements WHERE posted_at < $2
GROUP BY 1, 2
"""

MINIMAL_OVERLAP = """
WITH visited AS (
    SELECT DISTINCT member_id, unit FROM activity
    WHERE occurred_at >= $1 AND occurred_at < $2
      AND kind IN ('purchase', 'redemption', 'consumption', 'coupon', 'order')
)
SELECT a.unit, b.unit AS other_unit, count(*) AS members
FROM visited a JOIN visited b ON a.member_id = b.member_id
GROUP BY 1, 2
"""

MINIMAL = {"rfm": MINIMAL_RFM, "liability": MINIMAL_LIABILITY, "overlap": MINIMAL_OVERLAP}

RawFigure = Callable[[RawFigureRows], Awaitable[object]]


def _raw_figures() -> dict[str, RawFigure]:
    """Each figure as the statements its use case runs (service_layer/figures.py)."""
    start, end = PERIOD

    async def liability(rows: RawFigureRows) -> object:
        return (
            await rows.posting_sums(start, end),
            await rows.lapsed_sums(start, end),
            await rows.outstanding(end),
            await rows.programme_at(end),
        )

    async def multi_unit(rows: RawFigureRows) -> object:
        return await rows.months(start, end, ""), await rows.whole_period(start, end, "")

    async def rfm_counts(rows: RawFigureRows) -> object:
        found = await rows.programme_at(end)
        return await rows.rfm_counts(start, end, "", found[1] if found else "")

    async def rfm_page(rows: RawFigureRows) -> object:
        found = await rows.programme_at(end)
        currency = found[1] if found else ""
        return (
            await rows.rfm_counts(start, end, "", currency),
            await rows.rfm_members(start, end, "", currency, RfmSegment.CHAMPIONS.value, "", 101),
        )

    async def cohorts(rows: RawFigureRows) -> object:
        return (
            await rows.cohort_sizes(start, end, ""),
            await rows.cohort_activity(start, end, ""),
        )

    async def health(rows: RawFigureRows) -> object:
        from loyalty_insights.domain.periods import Period

        months = Period(start, end).month_ends()
        return (
            await rows.health_activity(start, end, "", months),
            await rows.health_tiers(start, end, "", months),
            await rows.health_benefits(start, end, ""),
        )

    async def minimal(rows: RawFigureRows, sql: str, *args: object) -> object:
        return await rows.raw.fetch(sql, *args)

    return {
        "liability": liability,
        "multi_unit_members": multi_unit,
        "unit_overlap": lambda rows: rows.overlap(start, end, ""),
        "unit_flows": lambda rows: rows.flows(start, end, ""),
        "spend_share": lambda rows: rows.spend(start, end),
        "rfm_counts": rfm_counts,
        "rfm_first_page": rfm_page,
        "cohorts": cohorts,
        "programme_health": health,
        "minimal_rfm": lambda rows: minimal(rows, MINIMAL_RFM, start, end),
        "minimal_liability": lambda rows: minimal(rows, MINIMAL_LIABILITY, start, end),
    }


# --- the figures through the service's RPCs -----------------------------------------------------


def _period() -> dict[str, Any]:
    return {"start_time": timestamp(PERIOD[0]), "end_time": timestamp(PERIOD[1])}


RpcFigure = Callable[[insights_service_pb2_grpc.InsightsServiceStub], Awaitable[Message]]


def _rpc_figures() -> dict[str, RpcFigure]:
    """Each dashboard figure as its RPC (named as its raw statements are)."""
    metadata = GROUP_TEAM.metadata()
    p = _period

    def call(method: str, request: Message) -> RpcFigure:
        async def once(stub: insights_service_pb2_grpc.InsightsServiceStub) -> Message:
            reply: Message = await getattr(stub, method)(
                request, metadata=metadata, timeout=CALL_TIMEOUT
            )
            return reply

        return once

    return {
        "liability": call("GetPointsLiability", pb.GetPointsLiabilityRequest(**p())),
        "multi_unit_members": call("GetMultiUnitMembers", pb.GetMultiUnitMembersRequest(**p())),
        "unit_overlap": call("GetUnitOverlap", pb.GetUnitOverlapRequest(**p())),
        "unit_flows": call("GetUnitFlows", pb.GetUnitFlowsRequest(**p())),
        "spend_share": call("GetSpendShare", pb.GetSpendShareRequest(**p())),
        "rfm_counts": call("GetRfm", pb.GetRfmRequest(**p())),
        "rfm_first_page": call(
            "GetRfm",
            pb.GetRfmRequest(**p(), segment=RfmSegment.CHAMPIONS.value, page_size=100),
        ),
        "cohorts": call("GetCohorts", pb.GetCohortsRequest(**p())),
        "programme_health": call("GetProgrammeHealth", pb.GetProgrammeHealthRequest(**p())),
    }


def _bound(figure: Callable[[Any], Awaitable[object]], on: Any) -> Callable[[], Awaitable[object]]:
    async def once() -> object:
        return await figure(on)

    return once


async def _timed(op: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    """One untimed call (caches warm), then `runs` timed ones, one after the other (ms)."""
    await op()
    found = []
    for _ in range(runs):
        began = time.perf_counter()
        await op()
        found.append((time.perf_counter() - began) * 1000.0)
    return found


def _summary(latencies: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        name: {"p50_ms": _ms(values, 50), "p95_ms": _ms(values, 95), "runs": len(values)}
        for name, values in latencies.items()
    }


async def _insights(ctx: BenchContext, loaded: Loaded) -> RunningService[Any]:
    """The insights service on the loaded facts (its database `<prefix>insights`)."""
    service = await start_service(SPEC, ctx.settings(database_prefix=loaded.prefix), port=0)
    await service.wait_until_serving()
    return service


@scenario("raw-insights")
async def raw_insights(ctx: BenchContext) -> Measurement:
    """Ceiling: each figure's statements (the service's SQL text) on plain asyncpg, one at a
    time; plus hand-tuned minimal SQL for RFM and the liability.

    `BENCH_INSIGHTS_RUNS` (5) timed runs of each after one untimed; `extra.figures` has each
    one's p50/p95 (ms). Throughput: figures a second over all of them.
    """
    loaded = await _facts(ctx)
    conn = await asyncpg.connect(**asyncpg_params(loaded.url))
    try:
        rows = RawFigureRows(conn)
        latencies = {
            name: await _timed(_bound(figure, rows), _runs())
            for name, figure in _raw_figures().items()
        }
    finally:
        await conn.close()
    ctx.shared["insights_raw"] = latencies
    every = [
        v for name, values in latencies.items() if not name.startswith("minimal") for v in values
    ]
    return Measurement(
        count=len(every),
        seconds=sum(every) / 1000.0,
        concurrency=1,
        unit="figures",
        latencies_ms=every,
        extra={**_facts_extra(loaded), "figures": _summary(latencies)},
    )


@scenario("insights-dashboards", ceiling="raw-insights")
async def insights_dashboards(ctx: BenchContext) -> Measurement:
    """Each dashboard figure through the insights service's RPC, one call at a time.

    `BENCH_INSIGHTS_RUNS` (5) timed calls of each after one untimed; `extra.figures` has each
    one's p50/p95 (ms), whether it meets the 200 ms goal, and p50 / the raw statements' p50.
    """
    loaded = await _facts(ctx)
    service = await _insights(ctx, loaded)
    try:
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
            latencies = {
                name: await _timed(_bound(figure, stub), _runs())
                for name, figure in _rpc_figures().items()
            }
    finally:
        await service.stop(grace=0.5)
    raw: dict[str, list[float]] = ctx.shared.get("insights_raw", {})
    figures: dict[str, dict[str, Any]] = dict(_summary(latencies))
    for name, found in figures.items():
        found["meets_goal"] = found["p95_ms"] <= GOAL_MS
        if raw.get(name):
            found["vs_raw_p50"] = round(found["p50_ms"] / statistics.median(raw[name]), 2)
    every = [v for values in latencies.values() for v in values]
    return Measurement(
        count=len(every),
        seconds=sum(every) / 1000.0,
        concurrency=1,
        unit="figures",
        latencies_ms=every,
        extra={
            **_facts_extra(loaded),
            "goal_ms": GOAL_MS,
            "figures": figures,
            "over_goal": sorted(n for n, f in figures.items() if not f["meets_goal"]),
        },
    )


# --- a full refresh of every figure ---------------------------------------------------------------


async def _materialised_refresh(service: RunningService[Any]) -> float | None:
    """Seconds of the service's own full refresh of every figure, where it has one.

    The hook for the materialised per-member figures (`member_figures` and the function that
    rebuilds it): call that refresh here and return its seconds, and `insights-refresh` reports
    it beside the figures computed back to back. None until the service has one.
    """
    return None


@scenario("raw-insights-refresh")
async def raw_insights_refresh(ctx: BenchContext) -> Measurement:
    """Ceiling: every figure's statements once, back to back, on plain asyncpg (the raw side of
    a full refresh: the service's SQL text, no gRPC, no unit of work)."""
    loaded = await _facts(ctx)
    conn = await asyncpg.connect(**asyncpg_params(loaded.url))
    try:
        rows = RawFigureRows(conn)
        figures = {n: f for n, f in _raw_figures().items() if not n.startswith("minimal")}
        each: dict[str, float] = {}
        started = time.perf_counter()
        for name, figure in figures.items():
            began = time.perf_counter()
            await figure(rows)
            each[name] = round(time.perf_counter() - began, 3)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return Measurement(
        count=len(figures),
        seconds=seconds,
        concurrency=1,
        unit="figures",
        extra={**_facts_extra(loaded), "seconds_by_figure": each},
    )


@scenario("insights-refresh", ceiling="raw-insights-refresh")
async def insights_refresh(ctx: BenchContext) -> Measurement:
    """Every dashboard figure once, back to back, through the service (a full refresh of the
    figures for the default range), against the 1 minute goal; and the service's own
    materialised refresh where it has one (`extra.materialised_refresh_seconds`)."""
    loaded = await _facts(ctx)
    service = await _insights(ctx, loaded)
    try:
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
            figures = _rpc_figures()
            each: dict[str, float] = {}
            started = time.perf_counter()
            for name, figure in figures.items():
                began = time.perf_counter()
                await figure(stub)
                each[name] = round(time.perf_counter() - began, 3)
            seconds = time.perf_counter() - started
        materialised = await _materialised_refresh(service)
    finally:
        await service.stop(grace=0.5)
    return Measurement(
        count=len(figures),
        seconds=seconds,
        concurrency=1,
        unit="figures",
        extra={
            **_facts_extra(loaded),
            "seconds_by_figure": each,
            "goal_seconds": REFRESH_GOAL_S,
            "meets_goal": seconds <= REFRESH_GOAL_S,
            "materialised_refresh_seconds": materialised,
        },
    )


# --- DuckDB ---------------------------------------------------------------------------------------

# What the three queries read, exported column for column.
EXPORTS = {
    "activity": "SELECT member_id, kind, unit, occurred_at, spend FROM activity",
    "lot_movements": ("SELECT earned_unit, kind, points, posted_at, expires_at FROM lot_movements"),
}


async def _export(url: Any, folder: Path) -> dict[str, Path]:
    """Each table as CSV (`COPY ... TO STDOUT`), then as Parquet through DuckDB."""
    import duckdb

    conn = await asyncpg.connect(**asyncpg_params(url))
    found: dict[str, Path] = {}
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        for table, query in EXPORTS.items():
            csv = folder / f"{table}.csv"
            await conn.copy_from_query(query, output=str(csv), format="csv", header=True)
            parquet = folder / f"{table}.parquet"
            with duckdb.connect() as duck:
                duck.execute(
                    f"COPY (SELECT * FROM read_csv('{csv}', header = true)) "
                    f"TO '{parquet}' (FORMAT parquet)"
                )
            csv.unlink()
            found[table] = parquet
    finally:
        await conn.close()
    return found


@scenario("insights-duckdb")
async def insights_duckdb(ctx: BenchContext) -> Measurement:
    """The minimal RFM, liability and overlap queries in an in-process DuckDB over the same
    facts (exported to Parquet, then loaded into DuckDB's own tables), against PostgreSQL.

    `BENCH_INSIGHTS_RUNS` (5) timed runs of each in each engine after one untimed;
    `extra.queries` has both engines' p50 and PostgreSQL / DuckDB. Export and load times are
    in `extra`, outside what is measured.
    """
    import duckdb

    loaded = await _facts(ctx)
    start, end = PERIOD
    with tempfile.TemporaryDirectory(prefix="insights-duckdb-") as folder:
        began = time.perf_counter()
        parquet = await _export(loaded.url, Path(folder))
        export_seconds = time.perf_counter() - began
        duck = duckdb.connect()
        try:
            duck.execute("SET TimeZone = 'UTC'")
            began = time.perf_counter()
            for table, path in parquet.items():
                duck.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{path}')")
            duck_load_seconds = time.perf_counter() - began
            parquet_mb = sum(p.stat().st_size for p in parquet.values()) / 1e6

            def duck_query(sql: str) -> Callable[[], Awaitable[object]]:
                async def once() -> object:
                    return duck.execute(
                        sql, [start, end]
                    )  # the same text: DuckDB takes $n too.fetchall()

                return once

            duck_ms = {
                name: await _timed(duck_query(sql), _runs()) for name, sql in MINIMAL.items()
            }
            threads = duck.execute("SELECT current_setting('threads')").fetchone()
        finally:
            duck.close()
    conn = await asyncpg.connect(**asyncpg_params(loaded.url))
    try:

        def pg_query(sql: str) -> Callable[[], Awaitable[object]]:
            async def once() -> object:
                return await conn.fetch(sql, start, end)

            return once

        pg_ms = {name: await _timed(pg_query(sql), _runs()) for name, sql in MINIMAL.items()}
        workers = await conn.fetchval("SHOW max_parallel_workers_per_gather")
    finally:
        await conn.close()
    queries = {
        name: {
            "duckdb_p50_ms": _ms(duck_ms[name], 50),
            "postgres_p50_ms": _ms(pg_ms[name], 50),
            "postgres_over_duckdb": round(
                statistics.median(pg_ms[name]) / max(statistics.median(duck_ms[name]), 1e-6), 2
            ),
        }
        for name in MINIMAL
    }
    every = [v for values in duck_ms.values() for v in values]
    return Measurement(
        count=len(every),
        seconds=sum(every) / 1000.0,
        concurrency=1,
        unit="queries",
        latencies_ms=every,
        extra={
            **_facts_extra(loaded),
            "queries": queries,
            "export_seconds": round(export_seconds, 1),
            "duckdb_load_seconds": round(duck_load_seconds, 1),
            "parquet_mb": round(parquet_mb, 1),
            "duckdb_threads": threads[0] if threads else None,
            "postgres_parallel_workers_per_gather": workers,
        },
    )


# --- event-to-figure lag --------------------------------------------------------------------------


def _lag_event(number: int, member_id: str, at: datetime) -> Message:
    """Even numbers a purchase (PointsEarned -> activity), odd ones a posting (LedgerPosted ->
    ledger_postings and lot_movements), each of a member of its own."""
    posting_id = str(uuid.uuid4())
    if number % 2 == 0:
        return points_events.PointsEarned(
            member_id=member_id,
            posting_id=posting_id,
            unit="mall",
            order_id=f"lag-{number}",
            qualifying_spend_base=money_pb2.Money(currency_code="CNY", amount="100.00"),
            points=100,
            occurred_at=timestamp(at),
        )
    return points_events.LedgerPosted(
        member_id=member_id,
        postings=[
            points_events.LedgerPosting(
                posting_id=posting_id,
                kind=points_service_pb2.POSTING_KIND_EARN,
                unit="mall",
                points=100,
                posted_at=timestamp(at),
                occurred_at=timestamp(at),
            )
        ],
        movements=[
            points_events.LotMovement(
                posting_id=posting_id,
                lot_id=posting_id,
                earned_unit="mall",
                unit="mall",
                points=100,
                posted_at=timestamp(at),
            )
        ],
    )


FACT_OF = {
    points_events.PointsEarned: "SELECT member_id FROM activity WHERE member_id = ANY($1::text[])",
    points_events.LedgerPosted: (
        "SELECT member_id FROM ledger_postings WHERE member_id = ANY($1::text[])"
    ),
}


class LagWatch:
    """Each published event's publish time until its fact is found (a poll every 10 ms)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.pending: dict[type[Message], dict[str, float]] = {kind: {} for kind in FACT_OF}
        self.lags_ms: list[float] = []

    def published(self, event: Message, member_id: str, at: float) -> None:
        self.pending[type(event)][member_id] = at

    def waiting(self) -> int:
        return sum(len(p) for p in self.pending.values())

    async def poll(self) -> None:
        for kind, pending in self.pending.items():
            if not pending:
                continue
            rows = await self.conn.fetch(FACT_OF[kind], list(pending))
            seen = time.perf_counter()
            for row in rows:
                sent = pending.pop(row["member_id"], None)
                if sent is not None:
                    self.lags_ms.append((seen - sent) * 1000.0)


async def _forget(conn: asyncpg.Connection, member_ids: list[str]) -> None:
    """The benchmark's own facts out of the loaded database again."""
    for table in ("activity", "ledger_postings", "lot_movements"):
        await conn.execute(f"DELETE FROM {table} WHERE member_id = ANY($1::text[])", member_ids)


@scenario("insights-lag")
async def insights_lag(ctx: BenchContext) -> Measurement:
    """PointsEarned and LedgerPosted published to JetStream at `BENCH_INSIGHTS_RATE` (500) a
    second for `BENCH_INSIGHTS_LAG_SECONDS` (30), open loop, to the insights service running
    on the loaded facts: per event, publish -> its fact in the facts tables (p50/p99 against
    the 2 s goal). Throughput: events a second that became facts."""
    loaded = await _facts(ctx)
    rate = float(os.environ.get("BENCH_INSIGHTS_RATE", "500"))
    seconds = float(os.environ.get("BENCH_INSIGHTS_LAG_SECONDS", "30"))
    total = int(rate * seconds)
    settings = ctx.settings(database_prefix=loaded.prefix)
    service = await _insights(ctx, loaded)
    client = await events.connect(ctx.infra.nats_url, "loyalty-bench-insights-lag")
    conn = await asyncpg.connect(**asyncpg_params(loaded.url))
    member_ids = [str(uuid.uuid4()) for _ in range(total)]
    try:
        js = client.jetstream(publish_async_max_pending=4000)
        await events.ensure_stream(js, settings.event_namespace, "points")
        await _consuming(js, settings.event_namespace, conn)
        watch = LagWatch(conn)
        started = time.perf_counter()
        publishing = asyncio.create_task(
            _publish_lag(js, settings.event_namespace, member_ids, rate, watch)
        )
        while not publishing.done() or watch.waiting():
            await asyncio.sleep(POLL_SECONDS)
            await watch.poll()
            if publishing.done() and time.perf_counter() - started > seconds + LAG_DRAIN_SECONDS:
                break
        publish_seconds = await publishing
        elapsed = time.perf_counter() - started
        missing = watch.waiting()
        await _forget(conn, member_ids)
    finally:
        await conn.close()
        await client.close()
        await service.stop(grace=0.5)
    lags = watch.lags_ms
    return Measurement(
        count=len(lags),
        seconds=elapsed,
        concurrency=1,
        unit="events",
        latencies_ms=lags,
        extra={
            **_facts_extra(loaded),
            "rate": rate,
            "published": total,
            "publish_seconds": round(publish_seconds, 2),
            "missing": missing,
            "goal_p99_ms": LAG_GOAL_MS,
            "p50_ms": _ms(lags, 50) if lags else None,
            "p99_ms": _ms(lags, 99) if lags else None,
            "max_ms": round(max(lags), 1) if lags else None,
            "meets_goal": bool(lags) and not missing and percentile(lags, 99) <= LAG_GOAL_MS,
        },
    )


async def _consuming(js: Any, namespace: str, conn: asyncpg.Connection) -> None:
    """One untimed event through, so the service's consumer is subscribed and warm."""
    member_id = str(uuid.uuid4())
    watch = LagWatch(conn)
    await _publish_lag(js, namespace, [member_id], 1.0, watch)
    deadline = time.perf_counter() + LAG_DRAIN_SECONDS
    while watch.waiting():
        if time.perf_counter() > deadline:
            raise AssertionError(f"no fact of the first event after {LAG_DRAIN_SECONDS:.0f}s")
        await asyncio.sleep(POLL_SECONDS)
        await watch.poll()
    await _forget(conn, [member_id])


async def _publish_lag(
    js: Any, namespace: str, member_ids: list[str], rate: float, watch: LagWatch
) -> float:
    """Event n published at start + n / rate (acks awaited at the end); seconds it took."""
    started = time.perf_counter()
    acks = []
    for number, member_id in enumerate(member_ids):
        delay = started + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event = _lag_event(number, member_id, insights_data.NOW)
        event_id = str(uuid.uuid4())
        headers = {
            MSG_ID_HEADER: event_id,
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event.DESCRIPTOR.full_name,
        }
        watch.published(event, member_id, time.perf_counter())
        acks.append(
            await js.publish_async(
                events.event_subject(event, namespace),
                event.SerializeToString(deterministic=True),
                headers=headers,
            )
        )
    await asyncio.gather(*acks)
    return time.perf_counter() - started
