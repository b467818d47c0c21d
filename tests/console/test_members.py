"""The console's member pages in Chromium: search by phone, adjust points with a reason and see
it in the statement, suspend and reactivate, a unit manager refused another unit's member, a
member named `<script>alert(1)</script>` shown as text, and a keyboard-only search. Members are
seeded over gRPC (identity's RegisterMember) with uuid data."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest_asyncio
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller

from tests.benefits.conftest import catalogue
from tests.console.conftest import Console, Watched
from tests.console.test_sign_in import _sign_in
from tests.points.conftest import points, programme
from tests.tiers.conftest import tiers

__all__ = ["catalogue", "points", "programme", "tiers"]  # the programme the 360 reads

ADMIN = Caller(unit="group", client_id="seed", scopes=frozenset({"admin"}))
XSS = "<script>alert(1)</script>"


@pytest_asyncio.fixture(loop_scope="session")
async def console(console: Console, programme: Any, tiers: Any, catalogue: Any) -> Console:
    """The console, with the programme, the tiers and the catalogue loaded."""
    return console


async def seed(console: Console, unit: str, name: str = "") -> tuple[str, str]:
    """A new member registered at `unit` over gRPC: (member id, phone)."""
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    target = console.gateway.context.settings.identity_target
    async with grpc.aio.insecure_channel(target) as channel:
        made = await IdentityServiceStub(channel).RegisterMember(
            identity_pb.RegisterMemberRequest(
                request_id=uuid.uuid4().hex,
                unit=unit,
                identities=[member_pb2.Identity(type="phone", value=phone)],
                profile=member_pb2.Profile(full_name=name),
            ),
            metadata=metadata_for(ADMIN),
            timeout=10,
        )
    return made.member.member_id, phone


def forgive(page: Watched, status: int) -> None:
    """The refusals a test provoked are not the page's faults."""
    page.problems[:] = [
        m
        for m in page.problems
        if not m.startswith(f"{status} ") and f"status of {status}" not in m
    ]


async def signed_in(page: Watched, console: Console, role: str, unit: str | None = None) -> Any:
    made, password = await console.operator(role, unit)
    p: Any = page.page
    await _sign_in(p, console, made.login, password)
    await p.wait_for_url(f"{console.url}/")
    return p


async def test_search_by_phone_then_adjust_points_seen_in_the_statement(
    page: Watched, console: Console
) -> None:
    member_id, phone = await seed(console, "hotel", "王小明")
    # A unit manager of hotel adjusts at hotel (points' rule: a unit's points, by that unit).
    p = await signed_in(page, console, "unit_manager", "hotel")
    await p.goto(f"{console.url}/members")
    await p.get_by_label("手机号、邮箱、卡号、旧会员号或会员编号").fill(phone)
    await p.locator("#member-search").click()
    await p.wait_for_url(f"{console.url}/members?q={phone}")
    hits = p.locator("#hits tbody tr")
    assert await hits.count() == 1
    row = await hits.inner_text()
    assert phone not in row and phone[-4:] in row  # masked
    assert "王小明" not in row
    await page.shot("search")
    await p.get_by_role("link", name=member_id).click()
    await p.wait_for_url(f"{console.url}/members/{member_id}")
    assert "王小明" not in await p.locator("#member-name").inner_text()
    await page.shot("member")
    reason = f"客服补偿 {uuid.uuid4().hex[:6]}"
    await p.locator("#adjust-points").fill("35")
    await p.locator("#adjust-reason").fill(reason)
    await p.locator("#adjust-submit").click()
    await p.locator("#confirm").wait_for()
    assert await p.locator("#confirm-reason").input_value() == reason
    assert "35" in await p.locator("#confirm-form").inner_text()
    await page.shot("confirm-adjust")
    await p.locator("#confirm").click()
    await p.wait_for_url(f"{console.url}/members/{member_id}?done=adjust#actions")
    assert await p.locator("#done").count() == 1
    statement = await p.locator("#statement").inner_text()
    assert reason in statement and "35" in statement and "adjust" in statement
    await page.shot("adjusted")


async def test_an_action_without_a_reason_is_refused(page: Watched, console: Console) -> None:
    member_id, _ = await seed(console, "mall")
    p = await signed_in(page, console, "group_admin")
    # The browser will not send the form without a reason; a request that does is refused.
    answer = await p.request.post(
        f"{console.url}/members/{member_id}/act/adjust",
        form={
            "csrf": await p.locator('meta[name="csrf-token"]').get_attribute("content"),
            "points": "5",
            "unit": "mall",
            "reason": " ",
            "confirmed": "yes",
            "request_id": f"console.{uuid.uuid4()}",
        },
        headers={"Origin": console.url.rsplit("/console", 1)[0]},
    )
    assert answer.status == 400
    assert "原因" in await answer.text()


async def test_suspend_and_reactivate_with_a_reason(page: Watched, console: Console) -> None:
    member_id, _ = await seed(console, "mall")
    p = await signed_in(page, console, "customer_service")
    await p.goto(f"{console.url}/members/{member_id}")
    why = f"退款纠纷 {uuid.uuid4().hex[:6]}"
    await p.locator("#suspend-reason").fill(why)
    await p.locator("#suspend-submit").click()
    await p.locator("#confirm").click()
    await p.wait_for_url(f"{console.url}/members/{member_id}?done=suspend#actions")
    assert await p.locator("#member-state").inner_text() == "MEMBER_STATE_SUSPENDED"
    assert why in await p.locator("#part-profile").inner_text()
    await page.shot("suspended")
    await p.locator("#reactivate-reason").fill("核实完毕")
    await p.locator("#reactivate-submit").click()
    await p.locator("#confirm").click()
    await p.wait_for_url(f"{console.url}/members/{member_id}?done=reactivate#actions")
    assert await p.locator("#member-state").inner_text() == "MEMBER_STATE_ACTIVE"


async def test_a_unit_manager_is_refused_another_units_member(
    page: Watched, console: Console
) -> None:
    member_id, phone = await seed(console, "mall", f"李{uuid.uuid4().hex[:4]}")
    unit = f"u{uuid.uuid4().hex[:10]}"
    p = await signed_in(page, console, "unit_manager", unit)
    response = await p.goto(f"{console.url}/members/{member_id}")
    assert response.status == 403
    text = await p.locator("main").inner_text()
    assert "MEMBER_OUT_OF_REACH" in text and "不属于您的业态" in text
    assert phone[-4:] not in text and member_id not in text
    assert await p.locator("#part-profile").count() == 0
    await page.shot("refused")
    # The statement and the actions are refused too.
    answer = await p.request.get(f"{console.url}/members/{member_id}/statement")
    assert answer.status == 403
    forgive(page, 403)


async def test_a_script_name_is_shown_as_text(page: Watched, console: Console) -> None:
    member_id, _ = await seed(console, "hotel", XSS)
    p = await signed_in(page, console, "group_admin")
    dialogs: list[str] = []
    p.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await p.goto(f"{console.url}/members/{member_id}")
    # A group admin sees personal data in clear: the name is the raw string, as text.
    assert await p.locator("#member-name").inner_text() == XSS
    assert await p.locator("#member-name script").count() == 0
    await page.shot("xss")
    assert dialogs == []


async def test_showing_personal_data_is_a_post(page: Watched, console: Console) -> None:
    member_id, phone = await seed(console, "hotel", XSS)
    p = await signed_in(page, console, "customer_service")
    dialogs: list[str] = []
    p.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await p.goto(f"{console.url}/members/{member_id}")
    assert phone not in await p.locator("#part-identities").inner_text()
    assert await p.locator("#member-name").inner_text() != XSS
    await p.locator("#unmask").click()
    await p.locator("#unmasked").wait_for()
    assert phone in await p.locator("#part-identities").inner_text()
    assert await p.locator("#member-name").inner_text() == XSS
    await page.shot("unmasked")
    assert dialogs == []


async def test_keyboard_only_search(page: Watched, console: Console) -> None:
    member_id, phone = await seed(console, "cinema")
    p = await signed_in(page, console, "customer_service")
    await p.goto(f"{console.url}/members")
    for _ in range(30):  # Tab until the search field has the focus
        await p.keyboard.press("Tab")
        if await p.evaluate("document.activeElement.id") == "member-query":
            break
    else:
        raise AssertionError("the search field is not reachable by Tab")
    await p.keyboard.type(phone)
    await p.keyboard.press("Enter")
    await p.wait_for_url(f"{console.url}/members?q={phone}")
    link = p.get_by_role("link", name=member_id)
    for _ in range(30):
        await p.keyboard.press("Tab")
        if await p.evaluate("document.activeElement.textContent") == member_id:
            break
    else:
        raise AssertionError("the hit is not reachable by Tab")
    await p.keyboard.press("Enter")
    await p.wait_for_url(f"{console.url}/members/{member_id}")
    assert await link.count() == 0
    await page.shot("keyboard")


async def test_a_query_that_names_nothing_is_a_form_error(page: Watched, console: Console) -> None:
    p = await signed_in(page, console, "customer_service")
    await p.goto(f"{console.url}/members?q=%3F%3F")
    error = p.locator("#member-query-error")
    assert await error.count() == 1
    assert await p.locator("#member-query").get_attribute("aria-invalid") == "true"
    await page.shot("bad-query")
    forgive(page, 400)


# The actions below are each taken with a reason, seen on the member's page afterwards and
# found in the audit page (who, which call, on whom, why).


async def act(p: Any, console: Console, member_id: str, action: str, **fields: str) -> str:
    """Fill the action's form (its fields by id suffix) with a fresh reason, confirm, and land
    back on the member's page saying it is done; the reason."""
    await p.goto(f"{console.url}/members/{member_id}")
    reason = f"{action} {uuid.uuid4().hex[:8]}"
    for name, value in fields.items():
        await p.locator(f"#{action}-{name}").fill(value)
    await p.locator(f"#{action}-reason").fill(reason)
    await p.locator(f"#{action}-submit").click()
    await p.locator("#confirm").wait_for()
    assert await p.locator("#confirm-reason").input_value() == reason
    if action == "erase":
        await p.locator("#typed").fill(member_id)
    await p.locator("#confirm").click()
    await p.wait_for_url(f"{console.url}/members/{member_id}?done={action}#actions")
    assert await p.locator("#done").count() == 1
    return reason


async def audited(p: Any, console: Console, target: str, method: str, reason: str) -> None:
    """The audit page lists the call on `target` with the reason (polled)."""
    from tests.console.test_audit import audit_rows

    rows = await audit_rows(p, console, target=target, method=method)
    reasons = [await r.inner_text() for r in await rows.locator(".audit-reason").all()]
    outcomes = [await r.inner_text() for r in await rows.locator(".audit-outcome").all()]
    assert (reasons, outcomes) == ([reason], ["OK"]), (method, reasons, outcomes)


async def test_issue_a_coupon_with_a_reason(page: Watched, console: Console) -> None:
    member_id, _ = await seed(console, "mall")
    p = await signed_in(page, console, "group_admin")
    reason = await act(p, console, member_id, "coupon", template="test-next-year")
    assert "test-next-year" in await p.locator("#part-coupons").inner_text()
    await page.shot("coupon")
    await audited(p, console, member_id, "IssueCoupons", reason)
    await page.shot("coupon-audited")


async def test_grant_then_revoke_a_tier_with_reasons(page: Watched, console: Console) -> None:
    member_id, _ = await seed(console, "hotel")
    p = await signed_in(page, console, "group_admin")
    granted = await act(p, console, member_id, "grant", tier="gold", end="2099-12-31")
    grants = await p.locator("#part-tier_grants").inner_text()
    assert "gold" in grants and granted in grants
    assert "gold" in await p.locator("#part-tier").inner_text()
    await page.shot("granted")
    name = next(
        word for word in grants.split() if word.startswith(f"members/{member_id}/tierGrants/")
    )
    revoked = await act(p, console, member_id, "revoke", grant=name)
    assert "gold" not in await p.locator("#part-tier").inner_text()
    await page.shot("revoked")
    await audited(p, console, member_id, "CreateTierGrant", granted)
    await audited(p, console, name, "RevokeTierGrant", revoked)


async def test_merge_two_members_then_unmerge_with_reasons(page: Watched, console: Console) -> None:
    survivor, _ = await seed(console, "mall")
    absorbed, phone = await seed(console, "hotel")
    p = await signed_in(page, console, "group_admin")
    merged = await act(p, console, survivor, "merge", absorbed=absorbed)
    # A group admin sees personal data in clear.
    assert phone in await p.locator("#part-identities").inner_text()  # the absorbed's phone
    await page.shot("merged")
    unmerged = await act(
        p, console, survivor, "unmerge", restored=absorbed, identities=f"phone:{phone}"
    )
    assert phone not in await p.locator("#part-identities").inner_text()
    await p.goto(f"{console.url}/members/{absorbed}")
    assert await p.locator("#member-state").inner_text() == "MEMBER_STATE_ACTIVE"
    await page.shot("unmerged")
    await audited(p, console, survivor, "MergeMembers", merged)
    await audited(p, console, survivor, "UnmergeMembers", unmerged)


async def test_erase_a_member_typing_its_id_with_a_reason(page: Watched, console: Console) -> None:
    member_id, phone = await seed(console, "cinema", f"周{uuid.uuid4().hex[:4]}")
    p = await signed_in(page, console, "group_admin")
    # A wrong id typed is refused on the confirmation page, nothing erased.
    await p.goto(f"{console.url}/members/{member_id}")
    await p.locator("#erase-reason").fill("会员要求注销")
    await p.locator("#erase-submit").click()
    await p.locator("#typed").fill("not-the-id")
    await p.locator("#confirm").click()
    await p.locator("#confirm-form .error").first.wait_for()
    forgive(page, 400)
    assert await p.locator("#typed").count() == 1
    reason = await act(p, console, member_id, "erase")
    assert await p.locator("#member-state").inner_text() == "MEMBER_STATE_ERASED"
    assert phone not in await p.locator("#part-identities").inner_text()
    await page.shot("erased")
    await audited(p, console, member_id, "EraseMember", reason)
