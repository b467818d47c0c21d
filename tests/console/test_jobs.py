"""The console's jobs page in Chromium: a member import uploaded over HTTP shows on the page and
the page's own 2 s polling carries it to done; a coupon issuance is listed; a group admin runs
points expiry with a reason and sees it finish; a group admin cancels a running member import
with a reason, sees it cancelled and finds the cancellation in the audit page; a unit manager
reads its unit's imports only, without the admin's forms, and may not start a job; customer
service gets a 403."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1.benefits_service_pb2_grpc import BenefitsServiceStub
from loyalty_devstack.testing import metadata_for
from loyalty_kit.server import RunningService

from tests.benefits.conftest import catalogue
from tests.console.conftest import Console, Watched
from tests.console.test_audit import audit_rows
from tests.console.test_members import forgive, signed_in
from tests.console.test_sign_in import _sign_in
from tests.gateway.conftest import Gateway, gateway
from tests.gateway.test_imports_http import IMPORT, mall_file, spec_header, upload
from tests.identity import import_files as identity_files
from tests.identity.import_files import importer, mall_spec, population
from tests.identity.import_files import upload as upload_import
from tests.identity.test_import_operations import uploads
from tests.points.conftest import ADMIN, points, programme
from tests.tiers.conftest import tiers

__all__ = ["catalogue", "gateway", "points", "programme", "tiers", "uploads"]
MALL = importer("mall")

# Playwright's own waits poll the page until the deadline (no sleeps).
DEADLINE_MS = 90_000


async def test_an_import_and_an_issuance_show_with_live_progress_until_done(
    page: Watched, console: Console, gateway: Gateway
) -> None:
    data, rows = mall_file(rows=400, seed=uuid.uuid4().int % 10**6)
    async with await gateway.session("mall", IMPORT) as http:
        created = await upload(http, data, spec_header())
        assert created.status_code == 201, created.text
    name = created.json()["memberImport"]["name"]

    async with grpc.aio.insecure_channel(console.gateway.context.settings.benefits_target) as ch:
        issued = await BenefitsServiceStub(ch).CreateCouponIssuance(
            benefits_pb.CreateCouponIssuanceRequest(
                coupon_issuance=benefits_pb.CouponIssuance(
                    template="welcome-silver", tag=f"segment:test-{uuid.uuid4().hex[:8]}"
                ),
                request_id=uuid.uuid4().hex,
            ),
            metadata=metadata_for(ADMIN),
        )
    issuance = issued.coupon_issuance.name

    p: Any = await signed_in(page, console, "group_admin")
    await p.goto(f"{console.url}/jobs")
    row = p.locator(f'#member-imports tr[data-name="{name}"]')
    await row.wait_for()
    await page.shot("listed")
    # The fragment polls itself while anything runs; the import reaches done on the page.
    done = p.locator(f'#member-imports tr[data-name="{name}"][data-state="succeeded"]')
    await done.wait_for(timeout=DEADLINE_MS)
    assert (await done.locator(".job-percent").inner_text()) == "100%"
    assert f"{rows:,}" in await done.locator(".job-counts").inner_text()
    listed = p.locator(f'#issuances tr[data-name="{issuance}"]')
    await listed.wait_for(timeout=DEADLINE_MS)
    assert "welcome-silver" in await listed.inner_text()
    await page.shot("import-done")


async def test_an_admin_runs_expiry_and_sees_it_finish(page: Watched, console: Console) -> None:
    p: Any = await signed_in(page, console, "group_admin")
    await p.goto(f"{console.url}/jobs")
    await p.locator("#run-job").select_option("expiry")
    await p.locator("#run-as-of").fill("2001-01-01")  # nothing expires then
    reason = f"月度过期 {uuid.uuid4().hex[:8]}"
    await p.locator("#run-reason").fill(reason)
    await p.locator("#run-submit").click()
    await p.wait_for_url(f"{console.url}/jobs?done=started#jobs-live")
    await p.locator(f'#runs tr[data-job="expiry"]:has-text("{reason}")').wait_for()
    run = p.locator(f'#runs tr[data-job="expiry"][data-state="succeeded"]:has-text("{reason}")')
    await run.wait_for(timeout=DEADLINE_MS)
    assert (await run.locator(".run-remaining").inner_text()) == "0"
    await page.shot("expiry-done")


async def test_a_unit_manager_reads_only_and_others_are_refused(
    page: Watched, console: Console
) -> None:
    p: Any = await signed_in(page, console, "unit_manager", "hotel")
    response = await p.goto(f"{console.url}/jobs")
    assert response.status == 200
    assert await p.locator("#run-form").count() == 0
    assert await p.locator("#cancel-form").count() == 0
    units = {
        await c.inner_text() for c in await p.locator("#member-imports tr td:nth-child(2)").all()
    }
    assert units <= {"hotel"}
    await page.shot("unit-manager")
    csrf = await p.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = await p.request.post(
        f"{console.url}/jobs/run",
        form={"csrf": csrf, "job": "expiry", "reason": "not mine"},
        headers={"Origin": console.url.rsplit("/console", 1)[0]},
    )
    assert refused.status == 403

    await p.locator("#sign-out").click()
    await p.wait_for_url(f"{console.url}/login")
    other: Any = await signed_in(page, console, "customer_service")
    response = await other.goto(f"{console.url}/jobs")
    assert response.status == 403
    assert await other.locator("#jobs-live").count() == 0
    assert await other.locator('nav a[href$="/jobs"]').count() == 0
    await page.shot("refused")
    forgive(page, 403)


async def test_an_admin_cancels_a_running_member_import_with_a_reason_and_it_is_audited(
    page: Watched, console: Console, gateway: Gateway, uploads: RunningService
) -> None:
    # Uploaded to an identity replica that runs no import: it waits, running, for a worker
    # (the session's identity service looks for others only when it starts).
    async with grpc.aio.insecure_channel(uploads.target) as channel:
        waiting = await upload_import(
            channel, MALL, mall_spec(), identity_files.mall_file(population(20))
        )
    name = waiting.name

    made, password = await console.operator("group_admin")
    p: Any = page.page
    await _sign_in(p, console, made.login, password)
    await p.wait_for_url(f"{console.url}/")
    await p.goto(f"{console.url}/jobs")
    await p.locator("#cancel-name").select_option(name)
    reason = f"错误的文件 {uuid.uuid4().hex[:8]}"
    await p.locator("#cancel-reason").fill(reason)
    await page.shot("cancelling")
    await p.locator("#cancel-submit").click()
    await p.wait_for_url(f"{console.url}/jobs?done=cancel#jobs-live")
    cancelled = p.locator(f'#member-imports tr[data-name="{name}"][data-state="cancelled"]')
    await cancelled.wait_for(timeout=DEADLINE_MS)
    await page.shot("cancelled")

    rows = await audit_rows(p, console, operator=made.operator_id, method="CancelMemberImport")
    assert await rows.count() == 1
    assert await rows.first.locator(".audit-reason").inner_text() == reason
    assert await rows.first.locator(".audit-method").inner_text() == ("identity.CancelMemberImport")
    await page.shot("audited")
