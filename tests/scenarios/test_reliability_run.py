"""`loyalty-dev reliability` end to end, as CI runs it: one short scenario (points killed
between committing an earn and answering it, then started again) with the five services as
processes, the load through the gateway's HTTP API, the ledger and loyalty-check as the
verdict, the table on stdout and the JSON row in the file asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_a_short_scenario_runs_end_to_end_and_proves_its_row(tmp_path: Path) -> None:
    results = tmp_path / "rows.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loyalty_devstack.cli",
            "reliability",
            "--only",
            "kill-after-commit",
            "--seconds",
            "8",
            "--json",
            str(results),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "| scenario" in done.stdout and "| kill-after-commit" in done.stdout
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["passed"] and row["problems"] == []
    assert row["acknowledged"] == row["on_ledger"] == row["requests"] > 0
    assert row["duplicates"] == row["lost"] == 0
    assert row["checker_findings"] == 0
    # The fault did fire: points died by SIGKILL right after a commit, and the retries of the
    # request it did not answer met a 503 before the first answer.
    assert row["notes"]["killed"]["exit"] == -9
    assert any(code.startswith("503") for code in row["codes"])
    # The services' output is kept beside the data.
    assert (tmp_path / "data" / "reliability" / "kill-after-commit.log").exists()
