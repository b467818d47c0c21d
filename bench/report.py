"""Results: one JSON object per scenario, and an aligned table of them."""

from __future__ import annotations

from typing import Any

from bench.load import percentile
from bench.registry import Measurement, Scenario


def record(
    scenario: Scenario, measured: Measurement, *, ceiling: dict[str, Any] | None, run_id: str
) -> dict[str, Any]:
    latencies = measured.latencies_ms or []
    ratio = None
    if ceiling is not None and ceiling.get("throughput"):
        ratio = round(measured.throughput / ceiling["throughput"], 3)
    p50 = round(percentile(latencies, 50), 3) if latencies else measured.p50_ms
    p99 = round(percentile(latencies, 99), 3) if latencies else measured.p99_ms
    found = {
        "scenario": scenario.name,
        "ceiling": scenario.ceiling,
        "unit": measured.unit,
        "throughput": round(measured.throughput, 1),
        "p50_ms": p50,
        "p99_ms": p99,
        "count": measured.count,
        "seconds": round(measured.seconds, 3),
        "concurrency": measured.concurrency,
        "ratio": ratio,
        "run": run_id,
        "extra": measured.extra,
    }
    # Scenarios measuring server CPU per operation (bench --deployed): against the ceiling's.
    cpu = measured.extra.get("server_cpu_ms_per_op", {}).get("total")
    if cpu is not None:
        found["server_cpu_ms_per_op"] = cpu
        ceiling_cpu = (ceiling or {}).get("server_cpu_ms_per_op")
        if ceiling_cpu:
            found["cpu_ratio"] = round(cpu / ceiling_cpu, 3)
    return found


def failure(scenario: Scenario, error: BaseException, *, run_id: str) -> dict[str, Any]:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:  # a TaskGroup's: the cause
        error = error.exceptions[0]
    return {
        "scenario": scenario.name,
        "ceiling": scenario.ceiling,
        "error": f"{type(error).__name__}: {error}",
        "run": run_id,
    }


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(records: list[dict[str, Any]]) -> str:
    header = (
        "scenario",
        "ceiling",
        "throughput",
        "unit",
        "p50 ms",
        "p99 ms",
        "count",
        "s",
        "conc",
        "ratio",
    )
    rows: list[tuple[str, ...]] = [header]
    for r in records:
        if "error" in r:
            rows.append((r["scenario"], r["ceiling"] or "-", "FAILED", *("-",) * 7))
            continue
        rows.append(
            (
                r["scenario"],
                r["ceiling"] or "-",
                _number(r["throughput"]),
                f"{r['unit']}/s",
                _number(r["p50_ms"], 2),
                _number(r["p99_ms"], 2),
                _number(r["count"]),
                _number(r["seconds"], 2),
                str(r["concurrency"]),
                _number(r["ratio"], 3),
            )
        )
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(len(header))]
    left = {0, 1, 3}
    lines = []
    for index, row in enumerate(rows):
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.extend(f"{r['scenario']}: {r['error']}" for r in records if "error" in r)
    return "\n".join(lines)


def cpu_table(records: list[dict[str, Any]]) -> str:
    """Server CPU milliseconds per operation, by process group, of the scenarios that measure
    it (empty when none does); `cpu ratio` is the total over the ceiling's total."""
    measured = [r for r in records if "server_cpu_ms_per_op" in r]
    if not measured:
        return ""
    groups: list[str] = []
    for r in measured:
        for name in r["extra"]["server_cpu_ms_per_op"]:
            if name != "total" and name not in groups:
                groups.append(name)
    header = ("scenario", *groups, "total", "cpu ratio", "load", "runner")
    rows: list[tuple[str, ...]] = [header]
    for r in measured:
        cpu = r["extra"]["server_cpu_ms_per_op"]
        rows.append(
            (
                r["scenario"],
                *(_number(cpu.get(g), 2) for g in groups),
                _number(cpu["total"], 2),
                _number(r.get("cpu_ratio"), 2),
                _number(r["extra"].get("load_cpu_ms_per_op"), 2),
                _number(r["extra"].get("runner_cpu_ms_per_op"), 2),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["server CPU ms per operation (from /proc; load and runner apart)"]
    for index, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
