"""The table of a run and its JSON document."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loyalty_devstack.reliability.outcomes import Row

COLUMNS = (
    "scenario",
    "requests",
    "acknowledged",
    "on the ledger",
    "duplicates",
    "lost",
    "time to recover",
    "checker",
    "verdict",
)


def cells(row: Row) -> list[str]:
    if row.skipped:
        return [row.scenario, *["-"] * 7, "skipped"]
    recover = "-" if row.recover_seconds is None else f"{row.recover_seconds:.1f} s"
    checker = (
        "-"
        if row.checker_findings is None
        else "clean"
        if not row.checker_findings
        else f"{row.checker_findings} findings"
    )
    return [
        row.scenario,
        str(row.requests),
        str(row.acknowledged),
        str(row.on_ledger),
        str(row.duplicates),
        str(row.lost),
        recover,
        checker,
        "ok" if row.passed else "FAIL",
    ]


def table(rows: Sequence[Row]) -> str:
    """An aligned table (Markdown pipes), then each failed or skipped row's reasons."""
    body = [list(COLUMNS), *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in body) for i in range(len(COLUMNS))]

    def line(values: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(values, widths, strict=True))
            )
            + " |"
        )

    lines = [line(body[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [line(values) for values in body[1:]]
    for row in rows:
        if row.skipped:
            lines.append(f"{row.scenario}: skipped: {row.skipped}")
        for problem in row.problems:
            lines.append(f"{row.scenario}: {problem}")
    return "\n".join(lines)


def record(row: Row, run: dict[str, Any]) -> dict[str, Any]:
    """One scenario's JSON object (bench style: one per line), with the run's details."""
    return {**asdict(row), "passed": row.passed, **run}


def write(path: Path, rows: Sequence[Row], run: dict[str, Any]) -> Path:
    """The rows as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record(r, run), default=str) + "\n" for r in rows))
    return path
