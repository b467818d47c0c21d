"""The console's stepped-job runs in the gateway's database (`console_job_runs`, migration 0006),
over HTTP: a run started on the session's gateway is listed, to its end, by a second gateway's
console on the same database; a running run past its lease shows interrupted and a group admin
resumes it to the end; two starts of a job at once give one run, and a start while one runs is
refused on every gateway."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from loyalty_gateway.adapters.backends import Backends
from loyalty_gateway.adapters.job_runs import AlreadyRunning, JobRun, JobRunStore
from loyalty_gateway.console.app import build_console
from loyalty_gateway.console.auth import Cookies, DatabaseAccounts
from loyalty_gateway.console.operators import OperatorStore, Policy
from loyalty_gateway.console.runner import JobRunner, lease_of
from loyalty_gateway.settings import GatewaySettings
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.gateway.conftest import Gateway, gateway
from tests.gateway.test_audit_log import eventually

__all__ = ["gateway"]

LONG_AGO = "2001-01-01"  # nothing is due then: a run ends after asking what is due
REPLICA = "http://replica-b"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Admin:
    operator_id: str
    cookie: str
    csrf: str


async def group_admin(gateway: Gateway) -> Admin:
    """A new group admin with an open console session (sessions are in the database: every
    gateway knows it)."""
    async with gateway.service.context.uow() as uow:
        store = OperatorStore(uow.session)
        made, _ = await store.create(f"op-{uuid.uuid4().hex[:12]}", "group_admin")
        cookie, session = await store.open_session(made, utc_now())
        await uow.commit()
    return Admin(made.operator_id, cookie, session.csrf_token)


def client(base: str, admin: Admin, transport: httpx.AsyncBaseTransport | None = None) -> Any:
    return httpx.AsyncClient(
        base_url=base,
        transport=transport,
        timeout=30,
        headers={
            "Cookie": f"{Cookies(secure=False).session}={admin.cookie}",
            "Origin": base,
        },
    )


@pytest_asyncio.fixture(loop_scope="session")
async def replica(gateway: Gateway) -> AsyncIterator[Starlette]:
    """A second gateway's console on the session's database and services."""
    context = gateway.service.context
    backends = Backends(context.settings)
    runner = JobRunner(JobRunStore(context.uow, lease_of()), utc_now)
    console = build_console(
        DatabaseAccounts(context.uow, Policy()),
        GatewaySettings(console_insecure_cookies=True),
        backends=backends,
        job_runs=runner,
    )
    yield Starlette(routes=[Mount("/console", console)])
    await runner.close()
    await backends.close()


def run_rows(html: str) -> dict[str, tuple[str, str]]:
    """The runs table's rows: run id -> (state, the row's text)."""
    rows = re.findall(r'<tr class="job-row run-row"(.*?)</tr>', html, re.S)
    found = {}
    for row in rows:
        run = re.search(r'data-run="([^"]+)"', row)
        state = re.search(r'data-state="([^"]+)"', row)
        assert run and state
        found[run.group(1)] = (state.group(1), row)
    return found


async def posted(http: httpx.AsyncClient, path: str, admin: Admin, **fields: str) -> str:
    """The page a form's POST redirects to."""
    answer = await http.post(path, data={"csrf": admin.csrf, **fields})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


async def test_a_run_started_on_one_gateway_is_seen_to_its_end_on_another(
    gateway: Gateway, replica: Starlette
) -> None:
    admin = await group_admin(gateway)
    reason = f"monthly expiry {uuid.uuid4().hex[:8]}"
    async with client(gateway.url, admin) as here:
        where = await posted(
            here, "/console/jobs/run", admin, job="expiry", as_of=LONG_AGO, reason=reason
        )
    assert "done=started" in where
    transport = httpx.ASGITransport(app=replica)
    async with client(REPLICA, admin, transport) as there:

        async def listed_done() -> str | None:
            page = await there.get("/console/jobs/live")
            assert page.status_code == 200, page.text
            mine = [r for r in run_rows(page.text).values() if reason in r[1]]
            assert len(mine) == 1, mine  # listed from the first replica's start
            return mine[0][1] if mine[0][0] == "succeeded" else None

        row = await eventually(listed_done, 90)
    assert 'data-job="expiry"' in row and admin.operator_id in row
    assert re.search(r'class="num run-remaining">0<', row)


async def test_a_stale_run_shows_interrupted_and_resuming_it_finishes_the_job(
    gateway: Gateway,
) -> None:
    admin = await group_admin(gateway)
    store = JobRunStore(gateway.service.context.uow, lease_of())
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    # A run whose gateway died: running, no heartbeat for longer than the lease.
    died = utc_now() - lease_of() - timedelta(minutes=1)
    stale = await store.start("grant-expiry", "op-gone", long_ago, "nightly grants", died)
    async with client(gateway.url, admin) as http:
        page = await http.get("/console/jobs")
        assert page.status_code == 200
        state, _ = run_rows(page.text)[stale.run_id]
        assert state == "interrupted"
        assert f'<option value="{stale.run_id}">' in page.text  # offered for resuming

        reason = f"its gateway died {uuid.uuid4().hex[:8]}"
        where = await posted(http, "/console/jobs/resume", admin, run=stale.run_id, reason=reason)
        assert "done=resume" in where

        async def ended() -> JobRun | None:
            found = await store.get(stale.run_id)
            assert found is not None
            return found if found.state != "running" else None

        run = await eventually(ended, 90)
        assert run.state == "succeeded", run
        assert (run.resumed_by, run.resume_reason, run.attempt) == (admin.operator_id, reason, 2)
        # Taken once: a second resume finds nothing to take.
        again = await posted(http, "/console/jobs/resume", admin, run=stale.run_id, reason="x")
        assert "refused=not-interrupted" in again
        page = await http.get("/console/jobs/live")
        assert run_rows(page.text)[stale.run_id][0] == "succeeded"


async def test_two_starts_of_a_job_at_once_give_one_run_and_others_are_refused(
    gateway: Gateway, replica: Starlette
) -> None:
    store = JobRunStore(gateway.service.context.uow, lease_of())
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    now = utc_now()
    tag = uuid.uuid4().hex[:8]
    outcomes = await asyncio.gather(
        store.start("year-end", "op-a", long_ago, f"first {tag}", now),
        store.start("year-end", "op-b", long_ago, f"second {tag}", now),
        return_exceptions=True,
    )
    started = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, AlreadyRunning)]
    assert (len(started), len(refused)) == (1, 1), outcomes
    held = started[0]
    try:
        admin = await group_admin(gateway)
        transport = httpx.ASGITransport(app=replica)
        for http in (client(gateway.url, admin), client(REPLICA, admin, transport)):
            async with http:
                where = await posted(
                    http, "/console/jobs/run", admin, job="year-end", reason=f"again {tag}"
                )
                assert "refused=already-running" in where
        listed = [r for r in await store.listed(20) if tag in r.reason]
        assert [r.run_id for r in listed] == [held.run_id]
    finally:
        assert await store.end(held, "interrupted", "", utc_now())


@pytest.mark.parametrize("bad", ["", "not-a-uuid", str(uuid.uuid4())])
async def test_resuming_what_is_not_interrupted_is_refused(gateway: Gateway, bad: str) -> None:
    admin = await group_admin(gateway)
    async with client(gateway.url, admin) as http:
        if not bad:
            answer = await http.post(
                "/console/jobs/resume", data={"csrf": admin.csrf, "run": "", "reason": "r"}
            )
            assert answer.status_code == 400
            return
        where = await posted(http, "/console/jobs/resume", admin, run=bad, reason="why")
        assert "refused=not-interrupted" in where
