"""`spky mcp stdio` serves the same catalogue over standard input and output, to a client that
starts it, with the token taken from SP00KY_MCP_TOKEN: the same scopes, the same redaction and
the same audit records; the official Python SDK's stdio client drives it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from sp00ky_mcp.engine.catalogue import Catalogue, Tool
from sp00ky_mcp.engine.context import ANONYMOUS, CallContext, Principal
from sp00ky_mcp.engine.protocol import Engine
from sp00ky_mcp.engine.stdio import BUSY, StdioServer
from sp00ky_mcp.product.store.sqlite import SqliteStore
from tests.product_support import product_server

pytestmark = pytest.mark.anyio
USER = "ada@example.com"


def spky(data_dir: str, *argv: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SP00KY_MCP_TOKEN"}
    if token is not None:
        environment["SP00KY_MCP_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "sp00ky_mcp", "mcp", *argv, "--data-dir", data_dir],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )


def minted(data_dir: str, scopes: str) -> dict[str, Any]:
    done = spky(data_dir, "token", "--user", USER, "--yes", "--json", "--scopes", scopes)
    assert done.returncode == 0, done.stderr
    token: dict[str, Any] = orjson.loads(done.stdout)
    return token


def stdio_server(data_dir: str, token: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "sp00ky_mcp", "mcp", "stdio", "--data-dir", data_dir],
        env={"SP00KY_MCP_TOKEN": token, "PATH": os.environ.get("PATH", "")},
        cwd=os.getcwd(),
    )


async def with_secret(data_dir: str, secret: str) -> None:
    """A project with one env var whose value is `secret`, made through a running server."""
    store = await SqliteStore.open(data_dir)
    try:
        async with product_server(store, data_dir) as env:
            user = await env.user(USER)
            await env.make_project(user)
            token = await env.token(user)
            await env.call(
                token, "set_env_var", {"project": "api", "key": "API_KEY", "value": secret}
            )
    finally:
        await store.close()


@asynccontextmanager
async def connected(data_dir: str, scopes: str, secret: str) -> AsyncIterator[Client]:
    """The SDK's stdio client, on a store holding `secret`, with a token of `scopes`."""
    await with_secret(data_dir, secret)
    token = minted(data_dir, scopes)["token"]
    with anyio.fail_after(60):
        async with Client(stdio_server(data_dir, token), mode="legacy") as client:
            yield client


async def test_the_sdk_client_lists_and_calls_tools_with_the_tokens_scopes(data_dir: str) -> None:
    secret = "s3cr3t-value-over-stdio"
    async with connected(data_dir, "mcp:read", secret) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        listed = await client.call_tool("list_env_vars", {"project": "api"})
        refused = await client.call_tool(
            "set_env_var", {"project": "api", "key": "B", "value": "c"}
        )
    assert "list_env_vars" in names and "set_env_var" not in names
    assert listed.is_error is False
    text = orjson.dumps(listed.structured_content).decode()
    assert "***REDACTED" in text and secret not in text
    assert refused.is_error is True
    audit = spky(data_dir, "audit", "--user", USER, "--json")
    tools = [row["tool"] for row in orjson.loads(audit.stdout)]
    assert tools[-2:] == ["list_env_vars", "set_env_var"]


async def test_with_secrets_reveal_the_value_comes_back(data_dir: str) -> None:
    secret = "s3cr3t-value-revealed"
    async with connected(data_dir, "mcp:read,secrets:reveal", secret) as client:
        listed = await client.call_tool("list_env_vars", {"project": "api"})
    assert secret in orjson.dumps(listed.structured_content).decode()


def test_without_a_token_it_says_what_to_set(data_dir: str) -> None:
    done = spky(data_dir, "stdio")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip() == (
        "spky: spky mcp stdio takes its token from SP00KY_MCP_TOKEN, which is not set; mint "
        "one with `spky mcp token` and set it in the client's config."
    )


def test_a_revoked_token_is_refused_at_start(data_dir: str) -> None:
    token = minted(data_dir, "mcp:read")
    assert spky(data_dir, "revoke", token["id"], "--user", USER).returncode == 0
    done = spky(data_dir, "stdio", token=token["token"])
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("spky: SP00KY_MCP_TOKEN was refused: ")


def test_a_line_that_is_not_json_gets_a_parse_error_and_the_server_goes_on(data_dir: str) -> None:
    token = minted(data_dir, "mcp:read")["token"]
    environment = {**os.environ, "SP00KY_MCP_TOKEN": token}
    ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'
    done = subprocess.run(
        [sys.executable, "-m", "sp00ky_mcp", "mcp", "stdio", "--data-dir", data_dir],
        input=b"{not json\n" + ping,
        capture_output=True,
        timeout=60,
        env=environment,
        check=False,
    )
    replies = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0
    assert replies[0]["error"]["code"] == -32700 and replies[0]["id"] is None
    assert replies[1] == {"jsonrpc": "2.0", "id": 1, "result": {}}


async def test_requests_beyond_the_bound_at_once_are_refused_and_the_rest_answered() -> None:
    release = anyio.Event()

    async def waits(arguments: dict[str, Any], ctx: CallContext) -> str:
        await release.wait()
        return "done"

    engine = Engine(Catalogue([Tool("waits", "Waits.", {"type": "object"}, waits)]))
    written: list[dict[str, Any]] = []

    async def write(data: bytes) -> None:
        written.append(orjson.loads(data))
        if len(written) == 1:
            release.set()  # the refusal is out: the running call may end

    async def principal() -> Principal:
        return ANONYMOUS

    def call(request_id: int) -> bytes:
        params = {"name": "waits", "arguments": {}}
        return orjson.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
        )

    async def lines() -> AsyncIterator[bytes]:
        yield call(1)
        yield call(2)

    server = StdioServer(engine, principal, write, 1 << 20, max_running=1)
    with anyio.fail_after(10):
        await server.serve(lines())
    assert written[0] == {
        "jsonrpc": "2.0",
        "id": 2,
        "error": {"code": -32600, "message": BUSY.message},
    }
    assert written[1]["id"] == 1 and written[1]["result"]["isError"] is False
