"""`spky mcp doctor` against running servers: the tools a good token sees, each 401 cause
diagnosed, and the equivalent curl command printed every time."""

from __future__ import annotations

import shlex
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer

from sp00ky_mcp.cli import doctor
from sp00ky_mcp.cli.commands import main
from sp00ky_mcp.engine.catalogue import Catalogue, Tool
from sp00ky_mcp.engine.config import ServerConfig
from sp00ky_mcp.engine.context import CallContext
from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.engine.versions import LATEST_HANDSHAKE
from sp00ky_mcp.product import scopes, tokens
from sp00ky_mcp.product.accounts import Accounts, User
from sp00ky_mcp.product.auth import TokenAuthenticator
from sp00ky_mcp.product.store.sqlite import SqliteStore
from tests.wire import local_sessions

from .product_support import ProductEnv

pytestmark = pytest.mark.anyio

CURL_INTRO = "Equivalent request from a terminal (export SP00KY_MCP_TOKEN first):"
MINT = "mint a new one with `spky mcp token` and re-add it"
NO_TOOLS = "✗ No tools: this token's scopes are too narrow; mint one with mcp:read or mcp:full."
HEADER_RULE = "the header must be exactly `Authorization: Bearer mcp_live_…`"


async def nothing(arguments: dict[str, Any], ctx: CallContext) -> str:
    return "ok"


def tool(name: str, scope: str) -> Tool:
    return Tool(name, f"The {name} tool.", {"type": "object"}, nothing, scope=scope)


class KnownServer:
    """A server with the product's authentication and a catalogue of known tools."""

    def __init__(self, server: McpServer, accounts: Accounts, user: User) -> None:
        self.server = server
        self.accounts = accounts
        self.user = user

    async def token(self, scope: str) -> str:
        return (await self.accounts.mint(self.user, scope, (scope,), None))[1]


@pytest.fixture
async def known(tmp_path: Path) -> AsyncIterator[KnownServer]:
    store = await SqliteStore.open(tmp_path)
    accounts = Accounts(store)
    catalogue = Catalogue(
        [tool("tail_logs", "logs:read"), tool("list_env", "env:read"), tool("deploy", "env:write")]
    )
    authenticate = TokenAuthenticator(accounts, rate_per_minute=6000, burst=100)
    server = McpServer(ServerConfig(port=0), catalogue, authenticate=authenticate)
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        yield KnownServer(server, accounts, await accounts.ensure_user("ada@example.com"))
        server.shutdown()
    await store.close()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SP00KY_MCP_URL", "SP00KY_MCP_TOKEN"):
        monkeypatch.delenv(name, raising=False)


async def run_doctor(
    capsys: pytest.CaptureFixture[str], url: str, token: str | None
) -> tuple[int, list[str]]:
    """`spky mcp doctor` in a worker thread (its client is synchronous; the server is not)."""
    argv = ["mcp", "doctor", "--url", url] + ([] if token is None else ["--token", token])
    status = await anyio.to_thread.run_sync(main, argv)
    out, err = capsys.readouterr()
    assert err == ""
    return status, out.splitlines()


def ending(url: str) -> list[str]:
    return [CURL_INTRO, doctor.curl_command(url)]


# --- a good token ----------------------------------------------------------------------------


async def test_a_good_token_connects_and_lists_the_tools_it_sees(
    capsys: pytest.CaptureFixture[str], known: KnownServer
) -> None:
    url = known.server.url
    status, lines = await run_doctor(capsys, url, await known.token("env:read"))
    assert (status, lines) == (
        0,
        [
            f"✓ Connected to {url} (sp00ky-mcp).",
            "✓ This token sees 1 tool: list_env",
            *ending(url),
        ],
    )


async def test_a_token_that_sees_several_tools_gets_them_all_listed(
    capsys: pytest.CaptureFixture[str], known: KnownServer
) -> None:
    secret = (await known.accounts.mint(known.user, "both", ("logs:read", "env:read"), None))[1]
    status, lines = await run_doctor(capsys, known.server.url, secret)
    assert (status, lines[1]) == (0, "✓ This token sees 2 tools: tail_logs, list_env")


async def test_a_token_whose_scopes_see_no_tool_is_told_so(
    capsys: pytest.CaptureFixture[str], known: KnownServer
) -> None:
    url = known.server.url
    status, lines = await run_doctor(capsys, url, await known.token("billing:read"))
    assert (status, lines) == (
        1,
        [
            f"✓ Connected to {url} (sp00ky-mcp).",
            NO_TOOLS,
            *ending(url),
        ],
    )


async def test_the_doctor_ends_the_session_it_opened(
    capsys: pytest.CaptureFixture[str], known: KnownServer
) -> None:
    await run_doctor(capsys, known.server.url, await known.token("logs:read"))
    assert local_sessions(known.server.service).ids() == []


async def test_a_good_token_on_the_product_server_sees_its_scopes_tools(
    capsys: pytest.CaptureFixture[str], product: ProductEnv
) -> None:
    url = product.server.url
    visible = product.server.engine.catalogue.visible_tools(scopes.expand(["mcp:read"]))
    names = [t["name"] for t in visible]
    status, lines = await run_doctor(
        capsys, url, await product.token(await product.user(), "mcp:read")
    )
    if names:
        plural = "" if len(names) == 1 else "s"
        found = f"✓ This token sees {len(names)} tool{plural}: {', '.join(names)}"
    else:
        found = NO_TOOLS
    assert (status, lines) == (
        0 if names else 1,
        [f"✓ Connected to {url} (sp00ky-mcp).", found, *ending(url)],
    )


async def test_the_token_can_come_from_the_environment(
    capsys: pytest.CaptureFixture[str], known: KnownServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SP00KY_MCP_TOKEN", await known.token("logs:read"))
    status, lines = await run_doctor(capsys, known.server.url, None)
    assert (status, lines[1]) == (0, "✓ This token sees 1 tool: tail_logs")


# --- 401s diagnosed by cause -----------------------------------------------------------------


async def test_a_missing_token_is_diagnosed_and_the_server_says_so_too(
    capsys: pytest.CaptureFixture[str], product: ProductEnv
) -> None:
    url = product.server.url
    status, lines = await run_doctor(capsys, url, None)
    assert (status, lines) == (
        1,
        [
            "✗ No token: pass --token or set SP00KY_MCP_TOKEN.",
            "✗ 401 Unauthorized: the token is missing; "
            f"{HEADER_RULE} (mint one with `spky mcp token`).",
            *ending(url),
        ],
    )


async def test_a_token_cut_short_is_diagnosed_as_malformed(
    capsys: pytest.CaptureFixture[str], product: ProductEnv
) -> None:
    url = product.server.url
    garbled = (await product.token(await product.user()))[:-3]
    status, lines = await run_doctor(capsys, url, garbled)
    assert (status, lines) == (
        1,
        [
            "✗ The token is malformed (wrong length or checksum); it was probably cut short.",
            f"✗ 401 Unauthorized: the token is malformed; {HEADER_RULE}, so {MINT}.",
            *ending(url),
        ],
    )


async def test_text_that_is_not_an_mcp_token_is_diagnosed(
    capsys: pytest.CaptureFixture[str], product: ProductEnv
) -> None:
    status, lines = await run_doctor(capsys, product.server.url, "ghp_something")
    assert status == 1
    assert lines[:2] == [
        "✗ The token does not start with mcp_live_; copy it again or mint a new one.",
        f"✗ 401 Unauthorized: the token is malformed; {HEADER_RULE}, so {MINT}.",
    ]


async def test_an_api_key_is_diagnosed_as_the_wrong_kind_of_token(
    capsys: pytest.CaptureFixture[str], product: ProductEnv
) -> None:
    status, lines = await run_doctor(capsys, product.server.url, "spk_live_" + "a" * 40)
    assert status == 1
    assert lines[:2] == [
        "✗ This is a Sp00ky API key (spk_live_…); MCP needs an mcp_live_ token.",
        "✗ 401 Unauthorized: this is a Sp00ky API key (spk_live_…); MCP needs its own "
        "mcp_live_ token: mint one with `spky mcp token`.",
    ]


async def test_an_unknown_token_is_diagnosed_by_the_server(
    capsys: pytest.CaptureFixture[str], product: ProductEnv
) -> None:
    url = product.server.url
    status, lines = await run_doctor(capsys, url, tokens.mint())
    assert (status, lines) == (
        1,
        [
            f"✗ 401 Unauthorized: the token is not recognised (mistyped, or deleted); {MINT}.",
            *ending(url),
        ],
    )


async def test_a_revoked_token_is_diagnosed_as_revoked(
    capsys: pytest.CaptureFixture[str], product: ProductEnv
) -> None:
    user = await product.user()
    secret = await product.token(user, name="gone")
    await product.accounts.revoke(user, "gone")
    status, lines = await run_doctor(capsys, product.server.url, secret)
    assert (status, lines[0]) == (1, f"✗ 401 Unauthorized: the token was revoked; {MINT}.")


async def test_an_unreachable_server_is_reported_with_the_curl_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/mcp"
    status, lines = await run_doctor(capsys, url, tokens.mint())
    assert (status, lines) == (
        1,
        [
            f"✗ Cannot reach {url}: nothing listens there (connection refused). Is the server "
            "running? ([Errno 111] Connection refused)",
            *ending(url),
        ],
    )


async def test_a_host_that_does_not_resolve_is_reported_as_dns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "http://no-such-host.invalid/v1/mcp"
    status, lines = await run_doctor(capsys, url, tokens.mint())
    assert (status, lines[0]) == (
        1,
        f"✗ Cannot reach {url}: the host name does not resolve (DNS). Check the host in the "
        "URL. ([Errno -2] Name or service not known)",
    )


async def test_https_against_a_plain_http_server_says_to_use_http(
    capsys: pytest.CaptureFixture[str], known: KnownServer
) -> None:
    url = known.server.url.replace("http://", "https://")
    status, lines = await run_doctor(capsys, url, await known.token("logs:read"))
    assert status == 1
    assert lines[0].startswith(
        f"✗ Cannot reach {url}: the TLS handshake failed: the server speaks plain HTTP there? "
        "Try http:// instead."
    )


async def test_a_wrong_path_shows_the_servers_own_hint(
    capsys: pytest.CaptureFixture[str], known: KnownServer
) -> None:
    url = known.server.url.replace("/v1/mcp", "/mcp")
    status, lines = await run_doctor(capsys, url, await known.token("logs:read"))
    assert (status, lines[0]) == (
        1,
        "✗ The server answered initialize with HTTP 404, saying 'Not found: the MCP endpoint "
        "is /v1/mcp.'.",
    )


async def test_a_pasted_bearer_prefix_is_taken_off_the_token(
    capsys: pytest.CaptureFixture[str], known: KnownServer
) -> None:
    token = await known.token("logs:read")
    status, lines = await run_doctor(capsys, known.server.url, f"Bearer {token}\n")
    assert status == 0 and not any(line.startswith("✗") for line in lines)


def test_the_doctor_never_prints_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    secret = tokens.mint()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    main(["mcp", "doctor", "--url", f"http://127.0.0.1:{port}/v1/mcp", "--token", secret])
    out, err = capsys.readouterr()
    assert secret not in out + err


# --- another MCP server ----------------------------------------------------------------------


@pytest.fixture
def sdk_server() -> Iterator[str]:
    """The official Python SDK's server, which answers every POST with an SSE stream."""
    app = MCPServer("sdk-server")

    @app.tool()
    def echo(text: str) -> str:
        return text

    config = uvicorn.Config(app.streamable_http_app(), log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    # Listening before uvicorn starts: a connection waits in the backlog until it accepts.
    listener.listen()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    finally:
        server.should_exit = True
        thread.join()
        listener.close()


async def test_a_server_that_answers_in_sse_is_understood(
    capsys: pytest.CaptureFixture[str], sdk_server: str
) -> None:
    status, lines = await run_doctor(capsys, sdk_server, tokens.mint())
    assert (status, lines) == (
        0,
        [
            f"✓ Connected to {sdk_server} (sdk-server).",
            "✓ This token sees 1 tool: echo",
            *ending(sdk_server),
        ],
    )


# --- the curl command ------------------------------------------------------------------------


def test_the_curl_command_initializes_with_the_token_from_the_environment() -> None:
    url = "https://mcp.example.test/v1/mcp"
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"'
        f'{LATEST_HANDSHAKE}","capabilities":{{}},"clientInfo":{{"name":"curl","version":"1"}}}}}}'
    )
    command = doctor.curl_command(url)
    assert command == (
        f"curl -sS -X POST {url} -H 'Content-Type: application/json' "
        "-H 'Accept: application/json, text/event-stream' "
        f"-H \"Authorization: Bearer $SP00KY_MCP_TOKEN\" -d '{body}'"
    )
    assert shlex.split(command)[-1] == body


def test_a_url_with_shell_characters_is_quoted_in_the_curl_command() -> None:
    url = "http://127.0.0.1:8765/v1/mcp?x=1&y=2"
    assert shlex.split(doctor.curl_command(url))[4] == url
