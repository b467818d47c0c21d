"""The console's audit page in Chromium: a group admin adjusts a member's points with a reason,
then finds the adjustment in /console/audit with the operator's id, the reason and the balance
before and after; the sign-in is listed; the export downloads CSV holding the entry (and is
itself recorded); unmasking is recorded by member and parts only; other roles get a 403."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

from tests.benefits.conftest import catalogue
from tests.console.conftest import Console, Watched
from tests.console.test_members import console, forgive, seed, signed_in
from tests.console.test_sign_in import _sign_in
from tests.gateway.test_audit_log import eventually
from tests.points.conftest import points, programme
from tests.tiers.conftest import tiers

__all__ = ["catalogue", "console", "points", "programme", "tiers"]


async def audit_rows(p: Any, console: Console, **filters: str) -> Any:
    """The audit page filtered as given, once it lists at least one entry (polled)."""
    query = "&".join(f"{k}={v}" for k, v in filters.items())

    async def listed() -> Any:
        await p.goto(f"{console.url}/audit?{query}")
        rows = p.locator("#audit-rows tr.audit-entry")
        return rows if await rows.count() else None

    return await eventually(listed)


async def test_an_adjustment_is_found_in_the_audit_page_and_its_export(
    page: Watched, console: Console
) -> None:
    member_id, _ = await seed(console, "hotel")
    made, password = await console.operator("group_admin")
    p: Any = page.page
    await _sign_in(p, console, made.login, password)
    await p.wait_for_url(f"{console.url}/")
    await p.goto(f"{console.url}/members/{member_id}")
    reason = f"补录消费 {uuid.uuid4().hex[:8]}"
    await p.locator("#adjust-points").fill("42")
    await p.locator("#adjust-reason").fill(reason)
    await p.locator("#adjust-submit").click()
    await p.locator("#confirm").click()
    await p.wait_for_url(f"{console.url}/members/{member_id}?done=adjust#actions")

    # The adjustment, with who, why, and the balance before and after.
    rows = await audit_rows(p, console, target=member_id, method="AdjustPoints")
    assert await rows.count() == 1
    row = rows.first
    assert await row.locator(".audit-operator").inner_text() == made.operator_id
    assert await row.locator(".audit-reason").inner_text() == reason
    assert await row.locator(".audit-method").inner_text() == "points.AdjustPoints"
    assert await row.locator(".audit-outcome").inner_text() == "OK"
    assert json.loads(await row.locator(".audit-before pre").inner_text())["available"] == 0
    after = json.loads(await row.locator(".audit-after pre").inner_text())
    assert (after["available"], after["points"]) == (42, 42)
    await page.shot("adjustment")

    # The sign-in is listed, by operator id (no login, no password).
    signs = await audit_rows(p, console, operator=made.operator_id, method="SignIn")
    assert await signs.count() == 1
    assert await signs.first.locator(".audit-method").inner_text() == "console.SignIn"
    assert made.login not in await p.locator("#audit-entries").inner_text()
    await page.shot("sign-in")

    # The export of the filtered log downloads through the session, as CSV with the entry.
    await audit_rows(p, console, target=member_id, method="AdjustPoints")
    async with p.expect_download() as waiting:
        await p.locator("#export-csv").click()
    download = await waiting.value
    assert download.suggested_filename == "audit-log.csv"
    saved = await download.path()
    text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [(r["method"], r["reason"], r["operator_id"]) for r in exported] == [
        ("AdjustPoints", reason, made.operator_id)
    ]
    assert json.loads(exported[0]["after"])["available"] == 42

    # The export is itself recorded.
    recorded = await audit_rows(p, console, operator=made.operator_id, method="ExportAuditLog")
    request = json.loads(await recorded.first.locator("details pre").text_content())
    assert request == {"format": "csv", "method": "AdjustPoints", "target": member_id}
    await page.shot("export-recorded")


async def test_unmasking_and_sign_out_are_recorded_without_data(
    page: Watched, console: Console
) -> None:
    member_id, phone = await seed(console, "mall", f"赵{uuid.uuid4().hex[:4]}")
    made, password = await console.operator("customer_service")
    p: Any = page.page
    await _sign_in(p, console, made.login, password)
    await p.wait_for_url(f"{console.url}/")
    await p.goto(f"{console.url}/members/{member_id}")
    await p.locator("#unmask").click()
    await p.locator("#unmasked").wait_for()
    await p.locator("#sign-out").click()
    await p.wait_for_url(f"{console.url}/login")

    admin = await signed_in(page, console, "group_admin")
    rows = await audit_rows(admin, console, operator=made.operator_id)
    methods = [await r.inner_text() for r in await rows.locator(".audit-method").all()]
    assert methods == ["console.SignOut", "console.ShowPersonalData", "console.SignIn"]
    table = await admin.locator("#audit-entries").text_content()
    assert member_id in table and '"profile"' in table and '"identities"' in table
    assert phone not in table and phone[-4:] not in table
    await page.shot("unmask-recorded")


async def test_other_roles_are_refused_the_audit_page(page: Watched, console: Console) -> None:
    p = await signed_in(page, console, "customer_service")
    response = await p.goto(f"{console.url}/audit")
    assert response.status == 403
    assert await p.locator("#audit-entries").count() == 0
    assert await p.locator('nav a[href$="/audit"]').count() == 0
    await page.shot("refused")
    csrf = await p.locator('meta[name="csrf-token"]').get_attribute("content")
    export = await p.request.post(
        f"{console.url}/audit/export",
        form={"csrf": csrf, "format": "csv"},
        headers={"Origin": console.url.rsplit("/console", 1)[0]},
    )
    assert export.status == 403
    forgive(page, 403)


async def test_failed_sign_ins_and_the_lock_out_are_recorded(
    page: Watched, console: Console
) -> None:
    made, _ = await console.operator("analyst")
    p: Any = page.page
    for _ in range(5):  # the fifth wrong password locks the account
        await _sign_in(p, console, made.login, f"wrong-{uuid.uuid4().hex}")
        await p.locator("#main .error").wait_for()
    admin = await signed_in(page, console, "group_admin")
    rows = await audit_rows(admin, console, operator=made.operator_id)
    methods = [await r.inner_text() for r in await rows.locator(".audit-method").all()]
    assert methods == ["console.LockOut"] + ["console.SignInFailed"] * 4
    outcomes = [await r.inner_text() for r in await rows.locator(".audit-outcome").all()]
    assert outcomes == ["RESOURCE_EXHAUSTED"] + ["UNAUTHENTICATED"] * 4
    assert made.login not in await admin.locator("#audit-entries").text_content()
    await page.shot("lock-out")


async def test_refusals_are_recorded_with_the_member_id_only(
    page: Watched, console: Console
) -> None:
    member_id, phone = await seed(console, "mall", f"钱{uuid.uuid4().hex[:4]}")
    unit = f"u{uuid.uuid4().hex[:10]}"
    made, password = await console.operator("unit_manager", unit)
    p: Any = page.page
    await _sign_in(p, console, made.login, password)
    await p.wait_for_url(f"{console.url}/")
    # Another unit's member, then the audit page the role may not open.
    assert (await p.goto(f"{console.url}/members/{member_id}")).status == 403
    assert (await p.goto(f"{console.url}/audit")).status == 403
    forgive(page, 403)
    await p.locator("#sign-out").click()
    await p.wait_for_url(f"{console.url}/login")

    admin = await signed_in(page, console, "group_admin")
    rows = await audit_rows(admin, console, operator=made.operator_id)
    methods = [await r.inner_text() for r in await rows.locator(".audit-method").all()]
    assert methods == [
        "console.SignOut",
        "console.RefusedForRole",
        "console.RefusedOutOfReach",
        "console.SignIn",
    ]
    outcomes = [await r.inner_text() for r in await rows.locator(".audit-outcome").all()]
    assert outcomes[1:3] == ["PERMISSION_DENIED", "PERMISSION_DENIED"]
    asked = [json.loads(await r.text_content()) for r in await rows.locator("details pre").all()]
    assert asked[0] == {"asked": "audit", "http_method": "GET", "route": "/audit"}
    assert asked[1] == {
        "asked": "member",
        "http_method": "GET",
        "member_id": member_id,
        "route": "/members/{member_id}",
    }
    assert await rows.nth(2).locator(".audit-target").inner_text() == member_id
    table = await admin.locator("#audit-entries").text_content()
    assert phone not in table and phone[-4:] not in table
    await page.shot("refusals-recorded")
