"""Runs scenarios one after another on one PostgreSQL and one NATS, and reports them.

For each: start the suite as processes, load the demo programme, make the load's members (with
points to spend) and API clients, run the load, inject the fault, end the load a few seconds
after the fault is repaired, wait until everything written has gone where it goes, read the
members' postings, run `loyalty-check`, and make the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from loyalty_check.checker import Options, check

from loyalty_devstack import demo
from loyalty_devstack.cli import create_api_client, holding, make_development_keys, suite_env
from loyalty_devstack.demo_history import NO_HISTORY
from loyalty_devstack.embedded import Infrastructure, drop_run_data, free_port
from loyalty_devstack.proxy import TcpProxy
from loyalty_devstack.reliability import admin, report
from loyalty_devstack.reliability.load import CLIENTS, Client, Load
from loyalty_devstack.reliability.outcomes import Ledger, Row, engagement_awards, tally
from loyalty_devstack.reliability.scenarios import Fault, Scenario
from loyalty_devstack.reliability.suite import Suite

TAIL_SECONDS = 5.0  # the load goes on this long after the fault is repaired
SETTLE_SECONDS = 120.0
DEADLINE_SECONDS = 5.0  # the gateway's request deadline in these runs
DEADLINE_MARGIN_SECONDS = 3.0  # an answer later than deadline + margin breaks the deadline
MEMBERS = 24
CLIENT_RATE = 100_000  # per second: the load is never throttled by the gateway


@dataclass(frozen=True)
class RunOptions:
    scenarios: Sequence[Scenario]
    seconds: float
    outage: float
    concurrency: int
    data_dir: Path  # the run's folder: embedded servers, keys, logs
    json_path: Path | None = None
    out: TextIO = sys.stdout

    @property
    def lead(self) -> float:
        """How far into the load each fault comes."""
        return max(3.0, self.seconds * 0.3)


async def run(options: RunOptions) -> tuple[list[Row], Path]:
    """Every scenario's row, and where their JSON went."""
    folder = options.data_dir
    run_id = f"r{secrets.token_hex(3)}"
    started = datetime.now(UTC)
    rows: list[Row] = []
    with holding(folder):
        env = suite_env(folder)
        os.environ.update(env)  # the harness's own calls (and the checker) sign as the suite
        make_development_keys(folder)
        # The embedded NATS afresh (a run killed before it cleaned up leaves streams behind,
        # each holding its byte limit in reserve); PostgreSQL is kept (initdb is slow), each
        # scenario dropping its databases.
        shutil.rmtree(folder / "servers" / "nats", ignore_errors=True)
        infra = Infrastructure(folder / "servers", nats_port=free_port())
        infra.start()
        say = options.out
        try:
            say.write(f"reliability run {run_id}: {', '.join(infra.describe().values())}\n")
            for index, scenario in enumerate(options.scenarios, start=1):
                say.write(f"== {scenario.name}: {scenario.what}\n")
                say.flush()
                row = await run_scenario(scenario, index, run_id, infra, options)
                rows.append(row)
                say.write(report.table([row]).splitlines()[2] + "\n")
                say.flush()
        finally:
            infra.stop()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = options.json_path or folder / "results" / f"{stamp}.jsonl"
    details = {
        "run": run_id,
        "started": started.isoformat(),
        "seconds": options.seconds,
        "outage_seconds": options.outage,
        "concurrency": options.concurrency,
        "deadline_seconds": DEADLINE_SECONDS,
    }
    return rows, report.write(path, rows, details)


async def run_scenario(
    scenario: Scenario, index: int, run_id: str, infra: Infrastructure, options: RunOptions
) -> Row:
    if scenario.needs == "postgres" and infra.postgres is None:
        return Row(scenario.name, skipped="needs the embedded PostgreSQL (one it may stop)")
    if scenario.needs == "nats" and infra.nats is None:
        return Row(scenario.name, skipped="needs the embedded NATS (one it may stop)")
    began = time.monotonic()
    own = f"{run_id}s{index:02d}"  # its databases `<own>_<service>`, its streams `<OWN>_...`
    with (options.data_dir / f"{scenario.name}.log").open("w") as log:
        suite = Suite.of(
            scenario.name,
            infra,
            options.data_dir,
            prefix=f"{own}_",
            namespace=own,
            log=log,
            first_env=scenario.first_env,
            gateway_deadline_seconds=DEADLINE_SECONDS,
        )
        proxy: TcpProxy | None = None
        if scenario.proxy_points:
            proxy = await TcpProxy("127.0.0.1", suite.ports["points"]).start()
            suite.always_env["gateway"] = {"LOYALTY_POINTS_TARGET": proxy.target}
        try:
            row = await _drive(scenario, suite, infra, proxy, options)
        except Exception as error:
            row = Row(scenario.name, problems=[f"harness: {type(error).__name__}: {error}"])
        finally:
            await suite.stop()
            if proxy is not None:
                await proxy.close()
            # What it made goes: every stream holds its byte limit in reserve at the server.
            with contextlib.suppress(Exception):
                await drop_run_data(infra.database_url, infra.nats_url, own)
    row.notes["seconds"] = round(time.monotonic() - began, 1)
    return row


async def _drive(
    scenario: Scenario,
    suite: Suite,
    infra: Infrastructure,
    proxy: TcpProxy | None,
    options: RunOptions,
) -> Row:
    await suite.start()
    await demo.load(suite.settings, NO_HISTORY)  # the programme and its 4 members
    targets = {name: suite.target(name) for name in suite.ports}
    harness = admin.Admin(suite.settings, targets)
    members = await harness.members(MEMBERS)
    if scenario.engagement_awards:
        await harness.engagement_awards()
    clients = {kind: await _client(suite, unit, scope) for kind, (unit, scope) in CLIENTS.items()}
    load = Load(
        suite.http_url,
        clients,
        members,
        options.concurrency,
        client_timeout=DEADLINE_SECONDS * 3,
    )
    fault = Fault(
        suite,
        infra,
        load,
        lead=options.lead,
        outage=options.outage,
        deadline=DEADLINE_SECONDS,
        proxy=proxy,
    )
    load_began = datetime.now(UTC)
    running = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(0)
        await scenario.inject(fault)
    except Exception as error:
        fault.problems.append(f"fault: {type(error).__name__}: {error}")
    finally:
        ends = max(options.seconds, (fault.repaired or load.now()) + TAIL_SECONDS)
        await asyncio.sleep(max(ends - load.now(), 0))
        load.stopping.set()
        await running
    loaded_for = load.now()
    notes: dict[str, object] = {"load_seconds": round(loaded_for, 1)}
    problems = list(fault.problems)
    try:
        notes["settle_seconds"], _ = await admin.settle(suite.settings, SETTLE_SECONDS)
    except TimeoutError as error:
        problems.append(str(error))
    postings = await harness.postings(members)
    ledger = Ledger.of_postings(postings)
    row = tally(
        scenario.name,
        load.requests,
        ledger,
        fault_at=fault.began,
        deadline_seconds=DEADLINE_SECONDS,
        margin_seconds=DEADLINE_MARGIN_SECONDS,
    )
    checked = await check(suite.settings, Options(limit=5))
    row.checker_findings = sum(r.total for r in checked.results)
    for result in checked.results:
        for finding in result.findings:
            problems.append(
                f"{finding.rule}: member {finding.member_id or '-'} expected {finding.expected} "
                f"found {finding.found} {finding.detail}".rstrip()
            )
    if scenario.engagement_awards:
        problems += engagement_awards(
            postings,
            admin.JOURNEY_REASON,
            admin.CHALLENGE_NAME,
            admin.CHALLENGE_TARGET,
            months=len({_month(load_began), _month(datetime.now(UTC))}),
        )
    if fault.began is not None and row.recover_seconds is None:
        problems.append("no request succeeded after the last failure")
    if crashed := suite.crashed():
        problems.append(f"exited during the run: {', '.join(crashed)}")
    row.problems = problems
    row.notes |= notes | fault.notes
    if fault.began is not None:
        row.notes["fault_at"] = round(fault.began, 1)
    if fault.repaired is not None:
        row.notes["repaired_at"] = round(fault.repaired, 1)
    return row.judge()


def _month(at: datetime) -> str:
    """The harness challenge's month (its time zone)."""
    return at.astimezone(ZoneInfo(admin.CHALLENGE_TIME_ZONE)).strftime("%Y-%m")


async def _client(suite: Suite, unit: str, scope: str) -> Client:
    made = await create_api_client(suite.env, unit, scope, "reliability run", rate=CLIENT_RATE)
    if made is None:
        raise RuntimeError(f"could not make an API client of {unit} (see the gateway's log)")
    return Client(made["client_id"], made["client_secret"])
