"""The HTTP layer on uvloop (`spky mcp serve --loop uvloop`, or an embedding program that runs
uvloop): uvloop's transports are not asyncio.Transport subclasses, and are driven the same."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sp00ky_mcp.cli import commands as cli
from sp00ky_mcp.cli.common import CliError
from tests.faults_support import (
    PROCESS_BOUND,
    Served,
    call_tool,
    mint_token,
    serve_argv,
    succeeded,
)
from tests.wire import (
    ENDPOINT,
    LATEST,
    connect,
    encode_request,
    initialize_body,
    initialize_reply,
    post_headers,
    rpc,
    running,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


async def test_on_uvloop_requests_are_answered_on_a_kept_connection_in_order() -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    async with running() as server, connect(server) as wire:
        await wire.request("POST", ENDPOINT, post_headers(), initialize_body())
        first = await wire.final()
        session_id = first.head.get("mcp-session-id")
        assert session_id is not None
        headers = post_headers(session_id, LATEST)
        await wire.send(
            encode_request("POST", ENDPOINT, headers, rpc("ping", 7), wire.host)
            + encode_request("POST", ENDPOINT, headers, rpc("ping", 8), wire.host)
        )
        replies = [await wire.final() for _ in range(2)]
    assert first.json() == initialize_reply()
    assert [reply.json() for reply in replies] == [
        {"jsonrpc": "2.0", "id": 7, "result": {}},
        {"jsonrpc": "2.0", "id": 8, "result": {}},
    ]


async def test_on_uvloop_a_reply_the_client_prefers_as_a_stream_is_one_sse_event() -> None:
    async with running() as server, connect(server) as wire:
        await wire.request("POST", ENDPOINT, post_headers(), initialize_body())
        session_id = (await wire.final()).head.get("mcp-session-id")
        assert session_id is not None
        headers = {
            **post_headers(session_id, LATEST),
            "Accept": "text/event-stream, application/json",
        }
        await wire.request("POST", ENDPOINT, headers, rpc("ping", 9))
        head = await wire.head()
        events = [event.json() async for event in wire.events(head) if event.data]
    assert head.get("content-type") == "text/event-stream"
    assert events == [{"jsonrpc": "2.0", "id": 9, "result": {}}]


def test_serve_on_uvloop_answers_a_call_and_stops_gracefully(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = mint_token(data_dir)
    server = Served([*serve_argv(data_dir), "--loop", "uvloop"])
    try:
        url = server.listening()
        with httpx.Client(timeout=PROCESS_BOUND) as client:
            payload = call_tool(client, url, token, "list_projects", {})
        server.signal(signal.SIGTERM)
        status = server.wait()
    finally:
        server.close()
    assert succeeded(payload)
    assert status == 0
    assert server.stderr_lines == []


def test_asking_for_uvloop_where_it_is_not_installed_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CliError) as refused:
        cli._uvloop_wanted("uvloop")
    assert str(refused.value) == (
        "uvloop is not installed: pip install 'sp00ky-mcp[uvloop]', or drop --loop uvloop."
    )


def test_serve_with_an_unknown_loop_is_refused_by_the_parser() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sp00ky_mcp", "mcp", "serve", "--loop", "trio"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "invalid choice: 'trio'" in done.stderr
