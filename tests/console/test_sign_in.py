"""The console's foundation in Chromium: sign in, a wrong password shown as an error, the
lock-out, the CSP header with nothing violating it, the language switch, and sign out."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Console, Watched


async def _sign_in(page: Any, console: Console, login: str, password: str) -> Any:
    await page.goto(f"{console.url}/login")
    await page.get_by_label("账号").fill(login)
    await page.get_by_label("密码").fill(password)
    return await page.locator("#sign-in").click()


async def test_sign_in_home_and_sign_out(page: Watched, console: Console) -> None:
    made, password = await console.operator()
    response = await page.page.goto(f"{console.url}/")  # type: ignore[attr-defined]
    assert response.url.startswith(f"{console.url}/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    await page.shot("login")
    await _sign_in(page.page, console, made.login, password)
    p: Any = page.page
    await p.wait_for_url(f"{console.url}/")
    assert await p.locator("html").get_attribute("lang") == "zh-CN"
    assert made.login in await p.locator(".who").inner_text()
    # The shipped htmx ran (from the package, under the CSP).
    assert await p.evaluate("() => typeof window.htmx") == "object"
    nav = p.get_by_role("navigation")
    for label in ("会员查询", "积分方案", "任务与导入", "数据看板", "审计日志"):
        assert await nav.get_by_role("link", name=label).count() == 1
    await page.shot("home")
    # The skip link is the first stop of the keyboard and takes focus to the content.
    await p.keyboard.press("Tab")
    assert await p.evaluate("document.activeElement.className") == "skip"
    await nav.get_by_role("link", name="会员查询").click()
    await p.wait_for_url(f"{console.url}/members")
    await page.shot("members-coming")
    await p.locator("#sign-out").click()
    await p.wait_for_url(f"{console.url}/login")
    await page.shot("signed-out")
    await p.goto(f"{console.url}/")
    assert p.url.startswith(f"{console.url}/login")


async def test_a_wrong_password_is_shown_and_five_lock(page: Watched, console: Console) -> None:
    made, password = await console.operator("customer_service")
    p: Any = page.page
    for attempt in range(5):
        await _sign_in(p, console, made.login, "not the password")
        error = p.locator("#login-error")
        await error.wait_for()
        text = await error.inner_text()
        assert ("锁定" in text) == (attempt == 4), text
        if attempt == 0:
            assert "不正确" in text
            await page.shot("wrong-password")
    await _sign_in(p, console, made.login, password)
    await p.locator("#login-error").wait_for()
    assert "锁定" in await p.locator("#login-error").inner_text()
    await page.shot("locked")


async def test_the_language_switch(page: Watched, console: Console) -> None:
    made, password = await console.operator("analyst")
    p: Any = page.page
    await _sign_in(p, console, made.login, password)
    await p.wait_for_url(f"{console.url}/")
    await p.get_by_label("语言").select_option("en")
    await p.locator("#lang-apply").click()
    await p.wait_for_url(f"{console.url}/")
    assert await p.locator("html").get_attribute("lang") == "en"
    assert await p.get_by_role("navigation").get_by_role("link", name="Dashboards").count() == 1
    # An analyst sees the dashboards only.
    assert await p.get_by_role("link", name="Member search").count() == 0
    await page.shot("english")
    await p.get_by_label("Language").select_option("zh-CN")
    await p.locator("#lang-apply").click()
    await p.wait_for_url(f"{console.url}/")
    assert await p.locator("html").get_attribute("lang") == "zh-CN"


async def test_a_cross_site_post_is_refused(page: Watched, console: Console) -> None:
    made, password = await console.operator()
    p: Any = page.page
    await _sign_in(p, console, made.login, password)
    await p.wait_for_url(f"{console.url}/")
    # A POST without the page's token (as a forged form would send) is refused.
    answer = await p.request.post(f"{console.url}/logout", headers={"Origin": "http://evil"})
    assert answer.status == 403
    await p.reload()
    assert p.url == f"{console.url}/"


async def test_a_csp_violation_fails_the_page(page: Watched, console: Console) -> None:
    """The watch itself: an inline script the policy blocks is reported (then forgiven here)."""
    p: Any = page.page
    await p.goto(f"{console.url}/login")
    await p.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
        " document.body.appendChild(s); }"
    )
    await p.wait_for_function("() => true")
    deadline = 50
    while not page.problems and deadline:
        await p.wait_for_timeout(100)
        deadline -= 1
    assert any("Content Security Policy" in m or "CSP violation" in m for m in page.problems)
    assert await p.evaluate("() => window.x") is None
    page.problems.clear()
