"""The console in a real browser: Debian's Chromium driven by Playwright's async API on the
session's event loop (pytest-playwright's sync fixtures would clash with it), against the
session's gateway. Playwright never downloads a browser here: Chromium comes from the system
(`make browser`), at /usr/bin/chromium or LOYALTY_CHROMIUM. Without it the tests are skipped,
unless CI=true, where that is a failure.

Every page fails its test on a console error, an uncaught exception or a Content-Security-Policy
violation. `shot` saves a full-page screenshot of each step to .artefacts/console/.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from loyalty_gateway.console.operators import Operator, OperatorStore
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

CHROMIUM = os.environ.get("LOYALTY_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--headless=new",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTEFACTS = Path(__file__).resolve().parents[2] / ".artefacts" / "console"
PASSWORD = "a long test password 1"
# Reported by the page itself: CSP violations are events, not always console messages.
WATCH_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI);
});
"""


def _chromium() -> str:
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if found:
        return found
    message = f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    executable = _chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=ARGS)
        yield launched
        await launched.close()


@dataclass
class Console:
    gateway: RunningService
    url: str  # http://127.0.0.1:<port>/console

    async def operator(
        self, role: str = "group_admin", unit: str | None = None
    ) -> tuple[Operator, str]:
        """A new operator (uuid login) and its password."""
        async with self.gateway.context.uow() as uow:
            made, password = await OperatorStore(uow.session).create(
                f"op-{uuid.uuid4().hex[:12]}", role, unit, PASSWORD
            )
            await uow.commit()
        return made, password


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def console(gateway_service: RunningService, settings: Settings) -> Console:
    return Console(gateway_service, f"http://127.0.0.1:{settings.gateway_http_port}/console")


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: object
    name: str
    problems: list[str] = field(default_factory=list)
    steps: int = 0

    async def shot(self, step: str) -> None:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        self.steps += 1
        safe = re.sub(r"[^a-z0-9_-]+", "-", f"{self.name}-{self.steps:02d}-{step}".lower())
        await self.page.screenshot(path=str(ARTEFACTS / f"{safe}.png"), full_page=True)  # type: ignore[attr-defined]


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: object, request: pytest.FixtureRequest) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1024, "height": 768})  # type: ignore[attr-defined]
    opened = await context.new_page()
    watched = Watched(opened, request.node.name)
    await context.add_init_script(WATCH_CSP)

    def on_console(message: object) -> None:
        if message.type == "error":  # type: ignore[attr-defined]
            text = message.text  # type: ignore[attr-defined]
            # A 401 (wrong password) the test provokes is the browser's note, not a fault; any
            # other failed load (a missing script or style) is one.
            if not re.search(r"Failed to load resource: .*status of 401", text):
                watched.problems.append(text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))

    def on_response(response: object) -> None:
        status = response.status  # type: ignore[attr-defined]
        if status >= 400 and status != 401:
            watched.problems.append(f"{status} {response.url}")  # type: ignore[attr-defined]

    opened.on("response", on_response)
    yield watched
    await context.close()
    assert not watched.problems, f"the page reported: {watched.problems}"
