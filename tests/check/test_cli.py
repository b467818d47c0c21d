"""`loyalty-check` as an operator runs it: settings from the environment, exit 0 clean, 1 with
findings, 2 when it cannot run; `--json` for machines."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from loyalty_devstack.embedded import free_port
from loyalty_kit.settings import Settings

from tests.check.conftest import Traffic, tampered

pytestmark = pytest.mark.asyncio(loop_scope="session")
CHECK = str(Path(sys.executable).with_name("loyalty-check"))


async def loyalty_check(settings: Settings, *args: str, **env: str) -> tuple[int, str, str]:
    """Run the command line against the test run's services; (exit status, stdout, stderr)."""
    environment = {
        **os.environ,
        "LOYALTY_DATABASE_URL": settings.database_url,
        "LOYALTY_DATABASE_PREFIX": settings.database_prefix,
        "LOYALTY_POINTS_TARGET": settings.points_target,
        "LOYALTY_DATA_DIR": str(settings.data_dir),
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        CHECK,
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_clean_data_exits_0_and_a_finding_exits_1_naming_the_member(
    traffic: Traffic, check_settings: Settings
) -> None:
    ours = ("--member", *traffic.members)  # what earlier tests left is theirs
    status, out, _ = await loyalty_check(check_settings, "--json", *ours)
    assert status == 0, out
    report = json.loads(out)
    assert report["clean"] is True and report["findings"] == []
    assert [r["findings"] for r in report["rules"]] == [0] * 13

    async with tampered(
        check_settings,
        "points",
        "UPDATE accounts SET available = available + 5 WHERE member_id = $1 RETURNING available",
        "UPDATE accounts SET available = available - 5 WHERE member_id = $1",
        traffic.payer,
    ):
        status, out, _ = await loyalty_check(check_settings, "--only", "balance-postings", *ours)
        json_status, json_out, _ = await loyalty_check(
            check_settings, "--json", "--only", "balance-postings", "balance-lots", *ours
        )
    assert status == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"balance-postings  member {traffic.payer}  expected ")
    assert lines[-1].split() == ["total", "1", "findings", lines[-1].split()[-1]]
    assert json_status == 1
    report = json.loads(json_out)
    assert report["clean"] is False
    assert [(f["rule"], f["member_id"]) for f in report["findings"]] == [
        ("balance-postings", traffic.payer),
        ("balance-lots", traffic.payer),
    ]
    assert [(r["rule"], r["findings"]) for r in report["rules"]] == [
        ("balance-postings", 1),
        ("balance-lots", 1),
    ]


async def test_an_unreachable_database_or_service_exits_2(
    traffic: Traffic, check_settings: Settings
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    status, out, err = await loyalty_check(check_settings, LOYALTY_DATABASE_URL=nowhere)
    assert (status, out) == (2, "")
    assert "could not run: cannot read the" in err

    points_down = {"LOYALTY_POINTS_TARGET": f"127.0.0.1:{free_port()}"}
    status, out, err = await loyalty_check(check_settings, **points_down)
    assert status == 2 and "GetSettlement" in err and "UNAVAILABLE" in err
    # Without the rules that call a service, the databases alone are checked.
    ours = ("--member", *traffic.members)
    status, out, _ = await loyalty_check(check_settings, "--json", "--no-rpc", *ours, **points_down)
    assert status == 0, out
    skipped = [r["rule"] for r in json.loads(out)["rules"] if r["skipped"]]
    assert skipped == ["settlement-ledger"]
