"""`spky mcp stdio` serves the same catalogue over standard input and output, to a client that
starts it, with the token taken from SP00KY_MCP_TOKEN: the same scopes, the same redaction and
the same audit records; the official Python SDK's stdio client drives it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from sp00ky_mcp.cli.accounts import lines_of
from sp00ky_mcp.engine.catalogue import Catalogue, Tool
from sp00ky_mcp.engine.context import ANONYMOUS, CallContext, Principal
from sp00ky_mcp.engine.errors import HttpError
from sp00ky_mcp.engine.protocol import Engine
from sp00ky_mcp.engine.stdio import AGAIN, BUSY, NOT_YET, REUSED, StdioServer
from sp00ky_mcp.product import tokens
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


def rpc(request_id: int | str, method: str, params: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
    )


INITIALIZE = rpc(
    "init",
    "initialize",
    {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
)


def waiting_call(request_id: int) -> bytes:
    return rpc(request_id, "tools/call", {"name": "waits", "arguments": {}})


class Exchange:
    """A StdioServer with one tool that waits until released, fed `lines`; what it writes is
    kept, and the tool released once a refusal (an error), or the reply to `release_at`, has
    been written."""

    def __init__(self, max_running: int = 32, release_at: object = None) -> None:
        self.release = anyio.Event()
        self.release_at = release_at  # or when the reply to this id is written
        self.answered = anyio.Event()
        self.written: list[dict[str, Any]] = []
        self.refuse: HttpError | None = None

        async def waits(arguments: dict[str, Any], ctx: CallContext) -> str:
            await self.release.wait()
            return "done"

        async def authenticated() -> Principal:
            if self.refuse is not None:
                raise self.refuse
            return ANONYMOUS

        engine = Engine(Catalogue([Tool("waits", "Waits.", {"type": "object"}, waits)]))
        self.server = StdioServer(engine, authenticated, self.write, 1 << 20, max_running)

    async def write(self, data: bytes) -> None:
        message = orjson.loads(data)
        self.written.append(message)
        if "error" in message or message.get("id") == self.release_at:
            self.release.set()
        if message.get("id") == "init":
            self.answered.set()

    async def run(self, *lines: bytes) -> list[dict[str, Any]]:
        """`lines` after the initialize exchange (the session's first request)."""

        async def fed() -> AsyncIterator[bytes]:
            yield INITIALIZE
            await self.answered.wait()
            for line in lines:
                yield line

        with anyio.fail_after(10):
            await self.server.serve(fed())
        return [message for message in self.written if message.get("id") != "init"]


async def test_requests_beyond_the_bound_at_once_are_refused_and_the_rest_answered() -> None:
    replies = await Exchange(max_running=1).run(waiting_call(1), waiting_call(2))
    assert replies[0] == {
        "jsonrpc": "2.0",
        "id": 2,
        "error": {"code": -32600, "message": BUSY.message},
    }
    assert replies[1]["id"] == 1 and replies[1]["result"]["isError"] is False


async def test_a_request_reusing_the_id_of_one_still_running_is_refused() -> None:
    replies = await Exchange().run(waiting_call(7), waiting_call(7))
    assert replies[0] == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32600, "message": REUSED.message},
    }
    assert replies[1]["id"] == 7 and replies[1]["result"]["isError"] is False
    assert len(replies) == 2


@pytest.mark.parametrize("named", [[1], {"id": 1}, True, 1.0, None])
async def test_a_cancellation_naming_no_request_id_changes_nothing(named: object) -> None:
    """`[1]` once ended the process; `true` once cancelled request 1 (True == 1 as a key)."""
    exchange = Exchange(release_at=2)
    cancel = orjson.dumps(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": named}}
    )
    replies = await exchange.run(waiting_call(1), cancel, rpc(2, "ping"))
    assert replies[0] == {"jsonrpc": "2.0", "id": 2, "result": {}}
    assert replies[-1]["id"] == 1 and replies[-1]["result"]["isError"] is False


async def test_before_initialize_only_a_ping_is_answered() -> None:
    exchange = Exchange()

    async def lines() -> AsyncIterator[bytes]:
        yield rpc(1, "tools/list")
        yield rpc(2, "ping")
        yield rpc(3, "server/discover")  # a stateless-era probe: not served here at all

    with anyio.fail_after(10):
        await exchange.server.serve(lines())
    assert sorted(exchange.written, key=lambda m: m["id"]) == [
        {"jsonrpc": "2.0", "id": 1, "error": {"code": -32600, "message": NOT_YET.message}},
        {"jsonrpc": "2.0", "id": 2, "result": {}},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "error": {"code": -32601, "message": "Method not found: 'server/discover'."},
        },
    ]


async def test_an_initialize_that_failed_may_be_sent_again() -> None:
    exchange = Exchange()
    exchange.refuse = HttpError(401, "401 Unauthorized: the token expired.")

    async def lines() -> AsyncIterator[bytes]:
        yield INITIALIZE
        await exchange.answered.wait()
        exchange.refuse = None
        yield INITIALIZE.replace(b'"init"', b'"again"')
        yield rpc(1, "ping")

    with anyio.fail_after(10):
        await exchange.server.serve(lines())
    assert exchange.written[0]["error"] == {
        "code": -32000,
        "message": "401 Unauthorized: the token expired.",
    }
    assert [m["id"] for m in exchange.written[1:]] == ["again", 1]
    assert "result" in exchange.written[1] and exchange.written[2]["result"] == {}


async def test_a_cancellation_right_behind_its_request_cancels_it_before_it_runs() -> None:
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    batch = orjson.dumps([orjson.loads(waiting_call(1)), cancel])
    replies = await Exchange().run(batch, rpc(2, "ping"))
    # A cancelled request gets no response (basic/utilities/cancellation).
    assert replies == [{"jsonrpc": "2.0", "id": 2, "result": {}}]


async def test_a_second_initialize_is_refused() -> None:
    replies = await Exchange().run(INITIALIZE.replace(b'"init"', b'"again"'))
    assert replies == [
        {"jsonrpc": "2.0", "id": "again", "error": {"code": -32600, "message": AGAIN.message}}
    ]


async def test_a_refusal_with_a_wait_says_the_seconds_in_its_message_and_data() -> None:
    exchange = Exchange()

    async def refused_later() -> AsyncIterator[bytes]:
        yield INITIALIZE
        await exchange.answered.wait()
        exchange.refuse = HttpError(
            429,
            "Too many requests for this token; retry after the number of seconds in Retry-After.",
            (("retry-after", "3"),),
        )
        yield rpc(1, "ping")

    with anyio.fail_after(10):
        await exchange.server.serve(refused_later())
    assert exchange.written[-1] == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {
            "code": -32000,
            "message": "Too many requests for this token; retry after the number of seconds in "
            "Retry-After (3 seconds).",
            "data": {"retryAfter": 3},
        },
    }


def test_a_client_that_closes_standard_output_stops_it_quietly_with_its_audit_kept(
    data_dir: str,
) -> None:
    """Without waiting for its input to close too: the read of a pipe cannot be interrupted,
    and must not hold the process."""
    token = minted(data_dir, "mcp:read")["token"]
    environment = {**os.environ, "SP00KY_MCP_TOKEN": token}
    process = subprocess.Popen(
        [sys.executable, "-m", "sp00ky_mcp", "mcp", "stdio", "--data-dir", data_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(
        INITIALIZE + b"\n" + rpc(1, "tools/call", {"name": "list_projects"}) + b"\n"
    )
    process.stdin.flush()
    answers = [orjson.loads(process.stdout.readline()) for _ in range(2)]
    process.stdout.close()  # the client stops reading, then asks once more
    process.stdin.write(rpc(2, "ping") + b"\n")
    process.stdin.flush()
    assert process.stderr is not None
    with process.stdin, process.stderr:
        stderr = process.stderr.read()  # until the process ends, its input still open
        process.wait(timeout=60)
    assert answers[1]["id"] == 1 and answers[1]["result"]["isError"] is False
    assert (process.returncode, stderr) == (141, b"")
    audit = spky(data_dir, "audit", "--user", USER, "--json")
    assert [row["tool"] for row in orjson.loads(audit.stdout)] == ["list_projects"]


def test_a_data_directory_without_a_store_is_refused_and_left_empty(tmp_path: Path) -> None:
    empty = tmp_path / "typo"
    empty.mkdir()
    done = spky(str(empty), "stdio", token=tokens.mint())
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"spky: There is no token store in {empty}; ")
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize(
    ("given", "lines"),
    [
        (b'{"a":1}\n{"b":2}\n', [b'{"a":1}\n', b'{"b":2}\n']),
        (b'{"a":1}\n{"b":2}', [b'{"a":1}\n', b'{"b":2}']),  # the last line unterminated
        (b"x" * 20 + b"\n" + b"ok\n", [b"x" * 11, b"ok\n"]),  # cut past the limit, rest dropped
        (b"y" * 10 + b"\n", [b"y" * 10 + b"\n"]),  # the limit and its newline
        (b"z" * 200_000 + b"\nok\n", [b"z" * 11, b"ok\n"]),  # longer than one read
        (b"", []),
    ],
)
def test_standard_input_is_read_as_lines_cut_past_the_limit(
    given: bytes, lines: list[bytes]
) -> None:
    read, write = os.pipe()

    def send() -> None:
        with os.fdopen(write, "wb") as sender:
            sender.write(given)

    writer = threading.Thread(target=send)
    writer.start()
    try:
        got = list(lines_of(read, 10))
    finally:
        writer.join()
        os.close(read)
    assert got == lines
