"""Insights at a million members: the dashboards and a full refresh of every figure, through
the service and raw.

Every insights scenario (here, `insights_duckdb.py`, `insights_lag.py`) reads the same facts
(`bench/insights_data.py`: `--members` members, default 1,000,000, or `BENCH_INSIGHTS_MEMBERS`;
20 postings each), loaded once per run (or kept by a server that outlives the run) before the
first of them; the load's seconds are in `extra`, not in what is measured. The figures are
asked for the year before the history's end (`insights_data.PERIOD`), group-wide.

- `raw-insights`: each figure's statements, the service's own SQL text (`FigureRows` of
  `adapters/figures.py` over a plain asyncpg connection: no gRPC, no session, no unit of work),
  plus hand-tuned minimal SQL for RFM and the liability; `BENCH_INSIGHTS_RUNS` (5) timed runs
  of each after one untimed. `extra.figures`: p50/p95 per figure.
- `insights-dashboards`: the same figures through the insights service's RPCs (start_service,
  consumers running, one channel, one call at a time); per figure p50/p95 against the 200 ms
  goal and its ratio to the raw statements' p50.
- `raw-insights-refresh` / `insights-refresh`: every figure once, back to back, raw and
  through the service; `_materialised_refresh` times the service's own full refresh of
  `member_figures` (`RefreshFigures`) beside them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import Message
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty.insights.v1 import insights_service_pb2_grpc
from loyalty_insights.adapters.figures import FigureRows
from loyalty_insights.domain.periods import Period
from loyalty_insights.domain.rfm import RfmSegment
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from bench.context import BenchContext
from bench.insights import (
    CALL_TIMEOUT,
    GROUP_TEAM,
    MINIMAL_LIABILITY,
    MINIMAL_RFM,
    bound,
    facts,
    facts_extra,
    runs,
    start_insights,
    summary,
    timed,
)
from bench.insights_data import PERIOD
from bench.registry import Measurement, scenario

GOAL_MS = 200.0  # each dashboard query at 1,000,000 members (issue 18, "Speed")
REFRESH_GOAL_S = 60.0  # every figure, 1,000,000 members and 20,000,000 postings


class RawFigureRows(FigureRows):
    """The service's figure queries, each run on one plain asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.raw = conn

    async def _conn(self) -> Any:
        return self.raw


RawFigure = Callable[[RawFigureRows], Awaitable[object]]


def chosen(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures `BENCH_INSIGHTS_FIGURES` names (comma-separated), all when it is unset."""
    names = {
        n.strip() for n in os.environ.get("BENCH_INSIGHTS_FIGURES", "").split(",") if n.strip()
    }
    return {n: f for n, f in figures.items() if not names or n in names}


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
        return await rows.rfm_groups(start, end, "", found[1] if found else "")

    async def rfm_page(rows: RawFigureRows) -> object:
        found = await rows.programme_at(end)
        currency = found[1] if found else ""
        return (
            await rows.rfm_groups(start, end, "", currency),
            await rows.rfm_members(start, end, "", currency, RfmSegment.CHAMPIONS.value, "", 101),
        )

    async def cohorts(rows: RawFigureRows) -> object:
        return (
            await rows.cohort_sizes(start, end, ""),
            await rows.cohort_activity(start, end, ""),
        )

    async def health(rows: RawFigureRows) -> object:
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


REFRESH_TIMEOUT_S = 1800.0  # one refresh at a million members takes minutes here
REFRESH_WAITS = 1800  # seconds waited, a second at a time, for the start's refresh to end


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
        # The standard window (no period: the trailing 12 months), read from the stored counts
        # of the members' figures once a refresh has made them.
        "rfm_counts_standard": call("GetRfm", pb.GetRfmRequest()),
        "multi_unit_members_standard": call("GetMultiUnitMembers", pb.GetMultiUnitMembersRequest()),
        "unit_overlap_standard": call("GetUnitOverlap", pb.GetUnitOverlapRequest()),
        "unit_flows_standard": call("GetUnitFlows", pb.GetUnitFlowsRequest()),
        "spend_share_standard": call("GetSpendShare", pb.GetSpendShareRequest()),
        # The liability as of now (no period): every fact so far, from the sums the ledger's
        # facts' triggers keep; its raw side is the liability over PERIOD.
        "liability_standard": call("GetPointsLiability", pb.GetPointsLiabilityRequest()),
    }


STANDARD = "_standard"  # a figure over the standard window; its raw side: the same over PERIOD


@scenario("raw-insights")
async def raw_insights(ctx: BenchContext) -> Measurement:
    """Ceiling: each figure's statements (the service's SQL text) on plain asyncpg, one at a
    time; plus hand-tuned minimal SQL for RFM and the liability.

    `BENCH_INSIGHTS_RUNS` (5) timed runs of each after one untimed; `extra.figures` has each
    one's p50/p95 (ms). Throughput: figures a second over all of them.
    """
    loaded = await facts(ctx)
    conn = await asyncpg.connect(**asyncpg_params(loaded.url))
    try:
        rows = RawFigureRows(conn)
        latencies = {
            name: await timed(bound(figure, rows), runs())
            for name, figure in chosen(_raw_figures()).items()
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
        extra={**facts_extra(loaded), "figures": summary(latencies)},
    )


@scenario("insights-dashboards", ceiling="raw-insights")
async def insights_dashboards(ctx: BenchContext) -> Measurement:
    """Each dashboard figure through the insights service's RPC, one call at a time.

    `BENCH_INSIGHTS_RUNS` (5) timed calls of each after one untimed; `extra.figures` has each
    one's p50/p95 (ms), whether it meets the 200 ms goal, and p50 / the raw statements' p50.
    """
    loaded = await facts(ctx)
    service = await start_insights(ctx, loaded)
    try:
        chosen_figures = chosen(_rpc_figures())
        refreshed = None
        if any(name.endswith(STANDARD) for name in chosen_figures):
            refreshed = await _materialised_refresh(service)  # the stored counts made
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
            latencies = {
                name: await timed(bound(figure, stub), runs())
                for name, figure in chosen_figures.items()
            }
    finally:
        await service.stop(grace=0.5)
    raw: dict[str, list[float]] = ctx.shared.get("insights_raw", {})
    figures: dict[str, dict[str, Any]] = dict(summary(latencies))
    for name, found in figures.items():
        found["meets_goal"] = found["p95_ms"] <= GOAL_MS
        if raw.get(name.removesuffix(STANDARD)):
            found["vs_raw_p50"] = round(
                found["p50_ms"] / statistics.median(raw[name.removesuffix(STANDARD)]), 3
            )
    every = [v for values in latencies.values() for v in values]
    return Measurement(
        count=len(every),
        seconds=sum(every) / 1000.0,
        concurrency=1,
        unit="figures",
        latencies_ms=every,
        extra={
            **facts_extra(loaded),
            "goal_ms": GOAL_MS,
            "figures": figures,
            "over_goal": sorted(n for n, f in figures.items() if not f["meets_goal"]),
            "materialised_refresh_seconds": refreshed,
        },
    )


async def _materialised_refresh(service: RunningService[Any]) -> float | None:
    """Seconds of the service's own full refresh of the members' figures (`RefreshFigures`:
    `member_figures` rebuilt in a few set-based statements), once the refresh a service makes
    at start over facts it never refreshed has ended (ABORTED `REFRESH_RUNNING` until then)."""
    async with grpc.aio.insecure_channel(service.target) as channel:
        stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
        for _ in range(REFRESH_WAITS):
            began = time.perf_counter()
            try:
                await stub.RefreshFigures(
                    pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex, full=True),
                    metadata=GROUP_TEAM.metadata(),
                    timeout=REFRESH_TIMEOUT_S,
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.ABORTED:
                    raise
                await asyncio.sleep(1.0)  # the start's refresh is still running
                continue
            return round(time.perf_counter() - began, 3)
    return None


@scenario("raw-insights-refresh")
async def raw_insights_refresh(ctx: BenchContext) -> Measurement:
    """Ceiling: every figure's statements once, back to back, on plain asyncpg (the raw side of
    a full refresh: the service's SQL text, no gRPC, no unit of work)."""
    loaded = await facts(ctx)
    conn = await asyncpg.connect(**asyncpg_params(loaded.url))
    try:
        rows = RawFigureRows(conn)
        figures = {n: f for n, f in chosen(_raw_figures()).items() if not n.startswith("minimal")}
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
        extra={**facts_extra(loaded), "seconds_by_figure": each},
    )


@scenario("insights-refresh", ceiling="raw-insights-refresh")
async def insights_refresh(ctx: BenchContext) -> Measurement:
    """Every dashboard figure once, back to back, through the service (a full refresh of the
    figures for the default range), against the 1 minute goal; and the service's own
    materialised refresh where it has one (`extra.materialised_refresh_seconds`)."""
    loaded = await facts(ctx)
    service = await start_insights(ctx, loaded)
    try:
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
            figures = {n: f for n, f in chosen(_rpc_figures()).items() if not n.endswith(STANDARD)}
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
            **facts_extra(loaded),
            "seconds_by_figure": each,
            "goal_seconds": REFRESH_GOAL_S,
            "meets_goal": seconds <= REFRESH_GOAL_S,
            "materialised_refresh_seconds": materialised,
        },
    )
