"""Fixtures for the browser tests: a real server, headless Chromium, signed-in pages.

Chromium is Debian's package (``/usr/bin/chromium``, or ``CLOISON_CHROMIUM``), driven by
Playwright for Python; Playwright's own browser download is never used. When either is
missing the tests skip, or fail under ``CLOISON_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.chromium import CHROMIUM_ARGS, DESKTOP
from tests.conftest import skip_or_fail
from tests.e2e.conftest import start_server
from tests.support import ServerProcess, User

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # reported by `_browser_available`, which skips or fails
    async_playwright = None
else:
    # Waits in these tests cross a real server and reconnect backoffs; 5 s is too tight.
    expect.set_options(timeout=15_000)

CHROMIUM = os.environ.get("CLOISON_CHROMIUM", "/usr/bin/chromium")
# Every Playwright action gives up after this long.
ACTION_TIMEOUT_MS = 15_000

SignIn = Callable[..., Awaitable["Page"]]


@pytest.fixture(autouse=True)
def _browser_available() -> None:
    """Skip (or fail) before any server is started when there is nothing to drive."""
    if async_playwright is None:
        skip_or_fail("playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server process; extra ``serve`` flags come from indirect parametrization."""
    proc = start_server(tmp_path, *getattr(request, "param", ()))
    yield proc
    proc.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def sign_in(browser: Browser, server: ServerProcess) -> AsyncIterator[SignIn]:
    """Open the page in a fresh browser context (its own sessionStorage) and sign in.

    At teardown the test fails on an uncaught exception in any page, or on any request that
    left the server's origin (no CDN, font or tracker).
    """
    errors: list[str] = []
    foreign: list[str] = []
    contexts = []
    own = (server.http_url + "/", server.ws_url, "data:")

    async def open_page(
        user: User,
        sphere_id: str = "",
        *,
        keyboard: bool = False,
        on_page: Callable[[Page], None] | None = None,
        **context: Any,
    ) -> Page:
        """Args: sphere_id, the sphere to open (its "#/" route); keyboard, type the token
        and press Enter instead of clicking; on_page, called before the page loads (to
        listen for its WebSockets); context, Playwright browser-context options."""
        ctx = await browser.new_context(**{"viewport": DESKTOP, **context})
        contexts.append(ctx)
        page = await ctx.new_page()
        page.set_default_timeout(ACTION_TIMEOUT_MS)
        page.on("pageerror", lambda error: errors.append(f"{user.name}: {error}"))
        page.on("request", lambda r: None if r.url.startswith(own) else foreign.append(r.url))
        page.on("websocket", lambda ws: None if ws.url == server.ws_url else foreign.append(ws.url))
        if on_page is not None:
            on_page(page)
        await page.goto(f"{server.http_url}/#/{sphere_id}" if sphere_id else server.http_url)
        token = page.get_by_label("Access token")
        if keyboard:
            await token.focus()  # the page focuses the e-mail field: password sign-in first
            await page.keyboard.type(user.token)
            await page.keyboard.press("Enter")
        else:
            await token.fill(user.token)
            await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "online")
        return page

    yield open_page
    for ctx in contexts:
        await ctx.close()
    assert not errors, errors
    assert not foreign, foreign
