"""A real browser for the sign-in tests: Debian's Chromium, headless, driven by Playwright
(never a browser a test tool downloads), and the loopback page a native client's redirect
lands on (RFC 8252 section 7.3)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import anyio
from playwright.async_api import Browser, Page, async_playwright

from .oauth_support import PASSWORD

CHROMIUM = "/usr/bin/chromium"
# As root, without a sandbox; no network beyond what the test serves (RFC-style closed
# machine: the background services' lookups would fail and slow every start).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A loopback port nothing listens on now (for a program that opens its own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A fresh browser (Playwright gives it an empty profile of its own)."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium.")
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Landing:
    """The page a client's loopback redirect URI lands on: it keeps the parameters the
    authorization server sent back."""

    port: int = 0
    received: list[dict[str, str]] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    async def next(self) -> dict[str, str]:
        with anyio.fail_after(30):
            await self.arrived.wait()
        self.arrived = anyio.Event()
        return self.received[-1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode()
        if urlsplit(target).path == "/callback":
            query = parse_qs(urlsplit(target).query)
            self.received.append({k: v[0] for k, v in query.items()})
            self.arrived.set()
        body = b"Signed in; you can close this window."
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()


@asynccontextmanager
async def landing() -> AsyncIterator[Landing]:
    page = Landing()
    server = await asyncio.start_server(page._serve, "127.0.0.1", 0)
    page.port = server.sockets[0].getsockname()[1]
    try:
        yield page
    finally:
        server.close()
        await server.wait_closed()


async def consent_in(
    browser: Browser, url: str, scopes: tuple[str, ...] = (), email: str = "ada@example.com"
) -> Page:
    """Opens the authorization URL, signs in, ticks `scopes` beyond the preselected ones and
    allows; the page is left where the redirect took it."""
    page = await browser.new_page()
    await page.goto(url)
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Allow").wait_for()
    for scope in scopes:
        await page.locator(f'input[value="{scope}"]').check()
    await page.get_by_role("button", name="Allow").click()
    await page.wait_for_url("http://127.0.0.1:*/callback*")
    return page


__all__ = ["CHROMIUM", "Landing", "chromium", "consent_in", "free_port", "landing"]
