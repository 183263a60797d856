"""The sign-in and consent pages in a real browser: every control found by its label, nothing
wider than a phone's screen, and no violation of the pages' own security policy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser

from .browser_support import chromium
from .oauth_support import PASSWORD, ask, register, with_password
from .product_support import ProductEnv

pytestmark = pytest.mark.anyio


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as opened:
        yield opened


async def test_the_pages_fit_a_phone_and_every_control_has_a_label(
    sqlite_product: ProductEnv, browser: Browser
) -> None:
    env = sqlite_product
    await with_password(env)
    client_id = await register(env)
    async with httpx.AsyncClient() as http:
        url = str((await ask(http, env, client_id)).page.url)
    page = await browser.new_page(viewport={"width": 360, "height": 640})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text))
    await page.goto(url)
    widths = [await page.evaluate("document.documentElement.scrollWidth")]
    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Allow").wait_for()
    widths.append(await page.evaluate("document.documentElement.scrollWidth"))
    assert widths == [360, 360]
    assert await page.get_by_label("env:write").is_checked() is False
    assert await page.get_by_label("env:read").is_checked() is True
    assert await page.get_by_label("secrets:reveal").is_checked() is False
    unlabelled = await page.evaluate(
        "[...document.querySelectorAll('input:not([type=hidden])')]"
        ".filter(i => !i.labels || i.labels.length === 0).length"
    )
    assert unlabelled == 0
    assert errors == []  # the style sheet is allowed by its digest: no policy violation
