"""What `make run` starts: `spky mcp serve` on its embedded store, printing what a user needs to
connect; the official Python SDK client then connects, initializes, lists tools and calls one."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.faults_support import served

pytestmark = pytest.mark.clients


TOKEN = re.compile(r"^\s+(mcp_live_\w+)$")


@pytest.fixture
def first_run(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`spky mcp serve` on an empty data directory: its URL and the token it shows once."""
    options = ("--user", "ada@example.com")
    with served(tmp_path, options=options) as server:
        url = server.url
        token = server.line(TOKEN).group(1)
        yield url, token
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_first_run_prints_a_token_the_sdk_client_can_use_at_once(
    first_run: tuple[str, str], mode: str
) -> None:
    url, token = first_run
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            result = await client.call_tool("list_projects", {})
    assert "list_projects" in names
    assert "create_project" not in names, "a first-run token is read-only"
    assert result.is_error is False
    assert result.structured_content == {"items": [], "next_cursor": None, "truncated": False}
