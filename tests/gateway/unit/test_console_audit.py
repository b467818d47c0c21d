"""The console's audit page without a server (Starlette's TestClient, a log in memory): group
admins only, filters passed to the log, a page at a time with an htmx "more" row, bad times
refused, the export streamed through the session and itself recorded."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded
from loyalty_gateway.adapters.audit_log import AuditFilter, AuditRow
from loyalty_gateway.console.app import build_console
from loyalty_gateway.settings import GatewaySettings
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from tests.gateway.unit.test_console_auth import BASE, NOW, SAME, MemoryAccounts, signed_in

MEMBER_ID = str(uuid.uuid4())


def row(n: int) -> AuditRow:
    return AuditRow(
        entry_id=str(uuid.UUID(int=n)),
        at=NOW - timedelta(minutes=n),
        service="points",
        method="AdjustPoints",
        outcome="OK",
        unit="hotel",
        client_id="console",
        operator_id="op-1",
        reason=f"<b>reason {n}</b>",
        request_id=f"console.{n}",
        target=MEMBER_ID,
        before=json.dumps({"available": n}),
        after=json.dumps({"available": n + 10}),
        request="{}",
    )


@dataclass
class MemoryLog:
    rows: list[AuditRow]
    asked: list[AuditFilter] = field(default_factory=list)

    async def page(
        self, chosen: AuditFilter, size: int, after: tuple[datetime, str] | None
    ) -> tuple[list[AuditRow], bool]:
        self.asked.append(chosen)
        kept = [r for r in self.rows if after is None or (r.at, r.entry_id) < after]
        return kept[:size], len(kept) > size

    async def every(self, chosen: AuditFilter) -> AsyncIterator[AuditRow]:
        self.asked.append(chosen)
        for r in self.rows:
            yield r


def client(
    log: MemoryLog, role: str = "group_admin", unit: str = "group"
) -> tuple[TestClient, str, list[AuditEntryRecorded]]:
    written: list[AuditEntryRecorded] = []

    async def write(entry: AuditEntryRecorded) -> None:
        written.append(entry)

    accounts = MemoryAccounts()
    login = f"op-{uuid.uuid4().hex[:8]}"
    accounts.add(login, role, unit)
    console = build_console(
        accounts,
        GatewaySettings(console_insecure_cookies=True),
        clock=lambda: NOW,
        audit_log=log,
        audit_write=write,
    )
    http = TestClient(Starlette(routes=[Mount("/console", console)]), base_url=BASE)
    return http, signed_in(http, login), written


def test_the_page_lists_a_page_and_its_more_row_fetches_the_next() -> None:
    log = MemoryLog([row(n) for n in range(1, 61)])
    http, _, _ = client(log)
    page = http.get("/console/audit", params={"target": f"members/{MEMBER_ID}", "start": ""})
    assert page.status_code == 200
    assert log.asked[-1] == AuditFilter(target=MEMBER_ID)
    assert page.text.count('class="audit-entry"') == 50
    assert "&lt;b&gt;reason 1&lt;/b&gt;" in page.text and "<b>reason" not in page.text
    assert 'id="audit-more"' in page.text and 'hx-get="/console/audit/rows?' in page.text
    more = page.text.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    following = http.get(more)
    assert following.status_code == 200 and "<html" not in following.text
    assert following.text.count('class="audit-entry"') == 10
    assert "reason 51" in following.text and 'id="audit-more"' not in following.text


def test_bad_times_are_refused_and_other_roles_get_403() -> None:
    http, _, _ = client(MemoryLog([]))
    assert http.get("/console/audit", params={"start": "yesterday"}).status_code == 400
    backwards = {"start": "2026-12-02T10:00", "end": "2026-12-01T10:00"}
    assert http.get("/console/audit", params=backwards).status_code == 400
    for role, unit in (
        ("customer_service", "group"),
        ("unit_manager", "hotel"),
        ("analyst", "group"),
    ):
        other, csrf, _ = client(MemoryLog([row(1)]), role, unit)
        assert other.get("/console/audit").status_code == 403
        assert other.get("/console/audit/rows").status_code == 403
        refused = other.post("/console/audit/export", data={"csrf": csrf}, headers=SAME)
        assert refused.status_code == 403


def test_the_export_streams_the_rows_and_is_recorded() -> None:
    log = MemoryLog([row(1), row(2)])
    http, csrf, written = client(log)
    answer = http.post(
        "/console/audit/export",
        data={"csrf": csrf, "format": "csv", "operator": "op-1", "start": "2026-11-30T00:00"},
        headers=SAME,
    )
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="audit-log.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["reason"] for r in rows] == ["<b>reason 1</b>", "<b>reason 2</b>"]
    assert log.asked[-1].operator_id == "op-1" and log.asked[-1].start is not None
    export = written[-1]
    assert (export.service, export.method, export.operator_id) == (
        "console",
        "ExportAuditLog",
        written[0].operator_id,
    )
    assert json.loads(export.request_json) == {
        "format": "csv",
        "operator": "op-1",
        "start": "2026-11-30T00:00",
    }
    # Without the CSRF token, nothing streams and nothing is recorded.
    before = len(written)
    assert (
        http.post("/console/audit/export", data={"format": "csv"}, headers=SAME).status_code == 403
    )
    assert len(written) == before


def test_sign_in_and_sign_out_are_recorded() -> None:
    http, csrf, written = client(MemoryLog([]))
    http.post("/console/logout", data={"csrf": csrf}, headers=SAME)
    assert [(e.service, e.method, e.outcome) for e in written] == [
        ("console", "SignIn", "OK"),
        ("console", "SignOut", "OK"),
    ]
    assert written[0].operator_id == written[1].operator_id != ""
