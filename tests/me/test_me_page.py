"""The member's own page at /me in Chromium, on a phone's screen: sign in with the code from
the development sink, the member code as a QR code whose digits are GetMemberCode's (renewed
in place by htmx), the balance after a till's purchase, consents withdrawn and granted with
their history, a wrong code refused in words, the English switch, and sign-out, after which the
old cookie opens nothing; the code rotated with a button, and every lot beyond the page's
twenty on the lots page."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Watched
from tests.me.conftest import MePage, new_phone

PHONE_SCREEN = {"width": 390, "height": 844}
SMS = "CONSENT_PURPOSE_MARKETING_SMS"


async def _ask_code(p: Any, me: MePage, typed: str) -> None:
    await p.goto(f"{me.url}/")
    await p.get_by_label("手机号").fill(typed)
    await p.locator("#send-code").click()
    await p.locator("#code-sent").wait_for()


async def _digits(p: Any) -> str:
    text: str = await p.locator("#code-digits").inner_text()
    return text.replace(" ", "")


async def test_a_member_signs_in_sees_the_code_points_and_consents_and_signs_out(
    page: Watched, me_page: MePage
) -> None:
    p: Any = page.page
    await p.set_viewport_size(PHONE_SCREEN)
    typed, e164 = new_phone()
    response = await p.goto(f"{me_page.url}/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert await p.locator("html").get_attribute("lang") == "zh-CN"
    await page.shot("sign-in")
    await _ask_code(p, me_page, typed)
    assert typed in await p.locator("#code-sent").inner_text()
    await page.shot("code-sent")
    code = await me_page.sms_code(e164)
    await p.get_by_label("验证码").fill(code)
    await p.locator("#verify").click()
    await p.locator("#member-code svg.qr").wait_for()
    await page.shot("signed-in")
    # The cookie is for the server alone.
    (cookie,) = [c for c in await p.context.cookies() if c["name"] == "loyalty_me"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert await p.evaluate("document.cookie") == ""

    # The QR code and the digits: the member's code now, as GetMemberCode gives it.
    member = await me_page.member_of(e164)
    assert await p.locator("#member-code svg.barcode").count() == 1
    for _ in range(3):  # the page and the call may straddle a 30-second step
        shown = await _digits(p)
        if shown == await me_page.member_code(member):
            break
        await p.reload()
    else:
        raise AssertionError("the page's code never matched GetMemberCode's")
    assert len(shown) == 18 and shown.startswith("66")
    assert await p.locator("#points-available").inner_text() == "0"

    # Consents: granted, withdrawn and granted again in place, with their history.
    await p.evaluate("window.stillHere = true")
    state = p.locator(f'.state[data-purpose="{SMS}"]')
    toggle = p.locator(f"#toggle-{SMS}")
    assert await state.inner_text() == "未同意"
    for expected in ("已同意", "未同意", "已同意"):
        await toggle.click()
        await p.wait_for_function(
            "([sel, text]) => document.querySelector(sel)?.innerText === text",
            arg=[f'.state[data-purpose="{SMS}"]', expected],
        )
    history = p.locator("#consent-history li")
    assert await history.count() == 3
    assert "已同意" in await history.nth(0).inner_text()
    assert "未同意" in await history.nth(1).inner_text()
    assert "member:self-service" in await history.nth(0).inner_text()
    await page.shot("consents")

    # The code renews itself as its step passes, without reloading the page.
    await p.wait_for_function(
        "(before) => document.querySelector('#code-digits').innerText.replaceAll(' ', '')"
        " !== before",
        arg=shown,
        timeout=45_000,
    )
    assert await p.evaluate("window.stillHere") is True
    assert await p.locator("#member-code svg.qr").count() == 1

    # A till earns for the phone; the page shows the balance.
    earned = await me_page.earn(e164, "600.00")
    assert earned["member"] == member
    await p.reload()
    assert await p.locator("#points-available").inner_text() == "600"
    assert await p.locator("#lots tbody tr").count() == 1
    await page.shot("balance")

    # Sign out: the sign-in form, and the old cookie opens nothing any more.
    await p.locator("#sign-out").click()
    await p.locator("#send-code").wait_for()
    await page.shot("signed-out")
    await p.context.add_cookies([cookie])
    await p.goto(f"{me_page.url}/")
    assert await p.locator("#send-code").count() == 1
    assert await p.locator("#member-code").count() == 0


async def test_a_wrong_code_is_refused_in_words_and_english_is_a_switch_away(
    page: Watched, me_page: MePage
) -> None:
    p: Any = page.page
    await p.set_viewport_size(PHONE_SCREEN)
    typed, e164 = new_phone()
    await _ask_code(p, me_page, typed)
    code = await me_page.sms_code(e164)
    wrong = "000000" if code != "000000" else "111111"
    await p.get_by_label("验证码").fill(wrong)
    await p.locator("#verify").click()
    error = p.locator("#sign-in-error")
    await error.wait_for()
    assert "验证码不正确，还可尝试 4 次" in await error.inner_text()
    await page.shot("wrong-code")
    await p.get_by_label("语言").select_option("en")
    await p.locator("#lang-apply").click()
    await p.get_by_label("Code", exact=True).wait_for()
    assert await p.locator("html").get_attribute("lang") == "en"
    await p.get_by_label("Code", exact=True).fill(code)
    await p.locator("#verify").click()
    await p.locator("#member-code svg.qr").wait_for()
    assert await p.locator("#coupons-title").inner_text() == "My coupons"
    await page.shot("english")


async def _signed_in(page: Watched, me: MePage) -> tuple[Any, str]:
    """A new member signed in on a phone's screen: the page, and its E.164 phone."""
    p: Any = page.page
    await p.set_viewport_size(PHONE_SCREEN)
    typed, e164 = new_phone()
    await _ask_code(p, me, typed)
    await p.get_by_label("验证码").fill(await me.sms_code(e164))
    await p.locator("#verify").click()
    await p.locator("#member-code svg.qr").wait_for()
    return p, e164


async def test_a_member_rotates_the_code_and_reads_every_lot_beyond_the_first_twenty(
    page: Watched, me_page: MePage
) -> None:
    p, e164 = await _signed_in(page, me_page)
    member = await me_page.member_of(e164)

    # The code's handle (digits 3 to 12) is the secret's: a rotation gives a new one.
    before = (await _digits(p))[2:12]
    await p.locator("#rotate-code").click()
    await p.wait_for_function(
        "(before) => document.querySelector('#code-digits')?.innerText"
        ".replaceAll(' ', '').slice(2, 12) !== before",
        arg=before,
    )
    after = (await _digits(p))[2:12]
    assert after == (await me_page.member_code(member))[2:12]
    await page.shot("code-rotated")

    for _ in range(22):  # a lot each
        await me_page.earn(e164, "10.00")
    await p.reload()
    assert await p.locator("#points-available").inner_text() == "220"
    assert await p.locator("#lots tbody tr").count() == 20
    await p.locator("#more-lots").click()
    await p.locator("#lots-title").wait_for()
    assert await p.locator("#lots tbody tr").count() == 22
    assert await p.locator("#next-lots").count() == 0
    await page.shot("all-lots")
    await p.locator("#back-home").click()
    await p.locator("#member-code svg.qr").wait_for()
