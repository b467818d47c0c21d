"""The programme page in Chromium: a file with an error shown at its line (loaded through the
file chooser), a new journey (a uuid key, so nothing else is touched) diffed, confirmed with a
reason and applied once however often the confirmation is sent, then in the live file; a
confirmation made stale by another change refused with nothing applied; and an analyst refused
the page and the apply."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.engagement.v1 import engagement_service_pb2_grpc
from loyalty_devstack.testing import metadata_for
from loyalty_gateway.console.operators import Operator
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService

from tests.console.conftest import Console, Watched
from tests.console.test_audit import audit_rows
from tests.console.test_sign_in import _sign_in

ADMIN = Caller(unit="group", client_id="console-tests", scopes=frozenset({"admin"}))


def _journey(key: str, tag: str = "console:one") -> str:
    return (
        "journeys:\n"
        f"- key: {key}\n"
        f"  display_name: Console test {key}\n"
        "  trigger: {kind: TRIGGER_KIND_BIRTHDAY}\n"
        "  steps:\n"
        f"  - change_tags: {{add_tags: ['{tag}']}}\n"
    )


async def _programme_as(
    page: Watched, console: Console, role: str = "group_admin"
) -> tuple[Any, Operator]:
    """The page signed in as a new operator of `role`, and that operator."""
    made, password = await console.operator(role)
    p: Any = page.page
    await _sign_in(p, console, made.login, password)
    await p.wait_for_url(f"{console.url}/")
    return p, made


async def _programme(page: Watched, console: Console, role: str = "group_admin") -> Any:
    return (await _programme_as(page, console, role))[0]


async def _applies(p: Any, console: Console, operator: Operator) -> list[tuple[str, str, Any]]:
    """The operator's programme applies in the audit log, newest first: (method, outcome,
    request)."""
    rows = await audit_rows(p, console, operator=operator.operator_id, target="programme")
    return [
        (
            await row.locator(".audit-method").inner_text(),
            await row.locator(".audit-outcome").inner_text(),
            json.loads(await row.locator("details pre").text_content()),
        )
        for row in await rows.all()
    ]


async def _review(p: Any, text: str) -> None:
    await p.get_by_label("方案文件（YAML）").fill(text)
    await p.locator("#review-file").click()
    await p.locator("#review").wait_for()


def _expected(page: Watched, status: int) -> None:
    """Forget the refusal the test provoked (the response and the browser's note of it)."""
    page.problems[:] = [
        p
        for p in page.problems
        if not p.startswith(f"{status} ") and f"status of {status}" not in p
    ]


async def test_a_files_problems_are_shown_at_their_lines(page: Watched, console: Console) -> None:
    p = await _programme(page, console)
    await p.get_by_role("navigation").get_by_role("link", name="积分方案").click()
    await p.wait_for_url(f"{console.url}/programme")
    # The live file, read-only, with its line numbers.
    assert await p.locator("#live-line-1 th").inner_text() == "1"
    await page.shot("live")
    key = f"c-{uuid.uuid4().hex[:10]}"
    bad = _journey(key) + "  colour: blue\n"  # line 7: no such field
    # The file chooser fills the text box (console.js; no inline script).
    await p.locator("#programme-upload").set_input_files(
        files=[{"name": "bad.yaml", "mimeType": "text/yaml", "buffer": bad.encode()}]
    )
    box = p.get_by_label("方案文件（YAML）")
    await p.wait_for_function(
        "(want) => document.getElementById('programme-text').value === want", arg=bad
    )
    assert await box.input_value() == bad
    await p.locator("#review-file").click()
    await p.locator("#problems").wait_for()
    row = p.locator("#file-line-7")
    assert await row.get_attribute("class") == "has-problem"
    assert "colour" in await row.locator(".line-problem").inner_text()
    link = p.locator('#problems a[href="#file-line-7"]')
    assert "第 7 行" in await link.inner_text()
    await link.click()
    assert p.url.endswith("#file-line-7")
    # Nothing to confirm while the file has problems.
    assert await p.locator("#confirm-form").count() == 0
    await page.shot("problem-at-line")


async def test_a_change_is_diffed_confirmed_and_applied_once(
    page: Watched, console: Console
) -> None:
    p, made = await _programme_as(page, console)
    await p.goto(f"{console.url}/programme")
    key = f"c-{uuid.uuid4().hex[:10]}"
    await _review(p, _journey(key))
    diff = p.locator("#diff-journeys")
    await diff.wait_for()
    added = diff.locator("tr.change-added")
    assert await added.count() >= 1
    assert key in await diff.inner_text()
    assert "新增" in await added.first.inner_text()
    await page.shot("diff")
    form = p.locator("#confirm-form")
    fields = {
        name: await form.locator(f'[name="{name}"]').input_value()
        for name in ("csrf", "digest", "request_id", "text")
    }
    await p.get_by_label("变更原因（必填）").fill("console test: a new journey")
    await p.locator("#apply-confirm").check()
    await page.shot("confirm")
    await p.locator("#apply").click()
    await p.wait_for_url(f"{console.url}/programme?applied={fields['request_id']}")
    outcome = p.locator("#programme-outcome")
    assert "方案已生效" in await outcome.inner_text()
    assert key in await p.locator("#live").inner_text()
    await page.shot("applied")
    # The same confirmation sent again applies nothing: it shows the first outcome (a second
    # apply would be refused as stale, the live programme having changed).
    origin = console.url.rsplit("/console", 1)[0]
    again = await p.request.post(
        f"{console.url}/programme/apply",
        form={**fields, "reason": "console test: a new journey", "confirm": fields["digest"]},
        headers={"Origin": origin},
    )
    assert again.status == 200 and again.url.endswith(f"applied={fields['request_id']}")
    assert "方案已生效" in await again.text()
    # Reviewed again, the file is the live programme.
    await _review(p, _journey(key))
    await p.locator("#no-changes").wait_for()
    # The apply is one entry of the log (its steps have their own), the resend none.
    ((method, outcome, request),) = await _applies(p, console, made)
    assert (method, outcome) == ("console.ApplyProgramme", "OK")
    assert request["digest"] == fields["digest"]
    assert request["request_id"] == fields["request_id"]
    assert request["changes"]["added"] >= 1 and request["sections"]["journeys"]["added"] >= 1
    assert "console test: a new journey" in await p.locator(".audit-reason").first.inner_text()
    await page.shot("apply-recorded")


async def test_a_stale_confirmation_is_refused(
    page: Watched, console: Console, engagement_service: RunningService
) -> None:
    p, made = await _programme_as(page, console)
    await p.goto(f"{console.url}/programme")
    key = f"c-{uuid.uuid4().hex[:10]}"
    await _review(p, _journey(key))
    digest = await p.locator('#confirm-form [name="digest"]').input_value()
    # Someone else changes the journeys in between.
    async with grpc.aio.insecure_channel(engagement_service.target) as channel:
        await engagement_service_pb2_grpc.EngagementServiceStub(channel).CreateJourney(
            engagement_pb.CreateJourneyRequest(
                journey=engagement_pb.Journey(
                    display_name=f"Console test other {uuid.uuid4().hex[:8]}",
                    trigger=engagement_pb.Trigger(kind=engagement_pb.TRIGGER_KIND_BIRTHDAY),
                    steps=[
                        engagement_pb.Step(
                            change_tags=engagement_pb.ChangeTags(add_tags=["console:other"])
                        )
                    ],
                ),
                request_id=str(uuid.uuid4()),
            ),
            metadata=metadata_for(ADMIN),
        )
    await p.get_by_label("变更原因（必填）").fill("console test: stale")
    await p.locator("#apply-confirm").check()
    async with p.expect_response(f"{console.url}/programme/apply") as answer:
        await p.locator("#apply").click()
    assert (await answer.value).status == 409
    message = p.locator("#programme-message")
    assert "现行方案已发生变化" in await message.inner_text()
    _expected(page, 409)
    assert key not in await p.locator("#live").inner_text()
    await page.shot("stale")
    # The page reviewed the file again: a new digest to confirm, and that one applies.
    fresh = await p.locator('#confirm-form [name="digest"]').input_value()
    assert fresh and fresh != digest
    await p.locator("#apply-confirm").check()
    await p.locator("#apply").click()
    await p.locator("#programme-outcome").wait_for()
    assert key in await p.locator("#live").inner_text()
    # The stale confirmation is an entry that applied nothing, then the apply.
    applies = await _applies(p, console, made)
    assert [(method, outcome) for method, outcome, _ in applies] == [
        ("console.ApplyProgramme", "OK"),
        ("console.ApplyProgrammeRefused", "ABORTED"),
    ]
    refused = applies[1][2]
    assert (refused["refused"], refused["digest"]) == ("stale", digest)
    assert applies[0][2]["digest"] == fresh


async def test_an_analyst_cannot_see_or_apply_the_programme(
    page: Watched, console: Console
) -> None:
    p = await _programme(page, console, "analyst")
    assert await p.get_by_role("navigation").get_by_role("link", name="积分方案").count() == 0
    response = await p.goto(f"{console.url}/programme")
    assert response.status == 403
    assert await p.locator("#live").count() == 0
    await page.shot("analyst-refused")
    csrf = await p.locator('meta[name="csrf-token"]').get_attribute("content")
    origin = console.url.rsplit("/console", 1)[0]
    refused = await p.request.post(
        f"{console.url}/programme/apply",
        form={
            "csrf": csrf,
            "text": _journey(f"c-{uuid.uuid4().hex[:10]}"),
            "digest": "0" * 32,
            "request_id": str(uuid.uuid4()),
            "reason": "not mine to apply",
        },
        headers={"Origin": origin},
    )
    assert refused.status == 403
    _expected(page, 403)
