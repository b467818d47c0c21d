"""`python -m bench` run from the bench tests: a process of its own in the repository's root,
its result lines (one JSON object a scenario) by scenario name."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def bench_results(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 240
) -> dict[str, dict[str, Any]]:
    """`python -m bench <args>` run to its end: its results by scenario."""
    return bench_run(args, env=env, timeout=timeout)[0]


def bench_run(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 240
) -> tuple[dict[str, dict[str, Any]], str]:
    """`python -m bench <args>` run to its end (exit status 0 asserted, its output shown if
    not): its results by scenario, and all it printed on stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = {
        line["scenario"]: line
        for line in map(json.loads, (x for x in done.stdout.splitlines() if x.startswith("{")))
    }
    return results, done.stdout
