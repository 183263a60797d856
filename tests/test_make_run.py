"""What `make run` starts: `spky mcp serve` on its embedded store, printing what a user needs to
connect; the official Python SDK client then connects, initializes, lists tools and calls one."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.clients


@pytest.fixture
def first_run(tmp_path: Path) -> Iterator[tuple[str, str]]:
    command = [
        sys.executable,
        "-m",
        "sp00ky_mcp",
        "mcp",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path),
        "--user",
        "ada@example.com",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(4)]
    try:
        url = re.search(r"listening on (\S+)", lines[0])
        token = re.search(r"(mcp_live_\w+)", lines[3])
        assert url and token, lines
        yield url.group(1), token.group(1)
    finally:
        process.terminate()
        status = process.wait(timeout=30)
        process.stdout.close()
    assert status == 0


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_first_run_prints_a_token_the_sdk_client_can_use_at_once(
    first_run: tuple[str, str], mode: str
) -> None:
    url, token = first_run
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None) as client:  # type: ignore[arg-type]
            names = [tool.name for tool in (await client.list_tools()).tools]
            result = await client.call_tool("list_projects", {})
    assert "list_projects" in names
    assert "create_project" not in names, "a first-run token is read-only"
    assert result.is_error is False
    assert result.structured_content == {"items": [], "next_cursor": None, "truncated": False}
