"""No client can take the server down.  A client that leaves at any phase of a connection's
life, in any way (FIN, RST, or a half-close and then silence), in either era, ends its own
connection only: the server goes on serving others and afterwards holds no task, timer, file
descriptor, connection or session for it.  A fault raised inside any step of the request path
is contained the same way.  Raw sockets throughout."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

import anyio
import anyio.abc
import pytest

from sp00ky_mcp.engine.catalogue import Catalogue, Tool
from sp00ky_mcp.engine.config import Limits
from sp00ky_mcp.engine.h1 import H1Core
from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.engine.service import McpService
from tests.faults_support import StreamingGate, fd_count, settled, task_count
from tests.wire import (
    ENDPOINT,
    LATEST,
    READ_BOUND,
    Gate,
    Reply,
    Truncated,
    Wire,
    bounded,
    connect,
    exchange,
    local_sessions,
    modern_headers,
    modern_meta,
    open_session,
    post_headers,
    rpc,
    running,
)

pytestmark = pytest.mark.anyio

ERAS = ("handshake", "stateless")
LEAVES = ("FIN", "RST", "half-close then silence")
BIG = "x" * (8 * 1024 * 1024)


# --- what the server holds ------------------------------------------------------------------


def live_timers() -> int:
    """Timers the event loop still has armed (asyncio keeps them in `_scheduled`; a cancelled
    one stays there until it comes due, so it is not counted)."""
    loop = asyncio.get_running_loop()
    return sum(not handle.cancelled() for handle in loop._scheduled)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Held:
    tasks: int
    timers: int
    fds: int
    connections: int
    transports: int
    sessions: int


def held(server: McpServer) -> Held:
    return Held(
        task_count(),
        live_timers(),
        fd_count(),
        server.http.open_connections,
        len(server.http.transports),
        len(local_sessions(server.service)),
    )


async def settled_at(server: McpServer, baseline: Held) -> Held:
    """What the server holds once it has let go of everything above `baseline`."""
    await settled(lambda: len(server.http.transports), baseline.transports)
    await settled(lambda: server.http.open_connections, baseline.connections)
    await settled(task_count, baseline.tasks)
    await settled(fd_count, baseline.fds)
    # Read outside `settled`, whose own deadline is a timer.
    await anyio.wait_all_tasks_blocked()
    return held(server)


# --- the two eras ---------------------------------------------------------------------------


@dataclass
class Era:
    name: str
    session_id: str | None = None

    def headers(self, method: str, name: str | None = None) -> dict[str, str]:
        if self.session_id is not None:
            return post_headers(self.session_id, LATEST)
        return modern_headers(method, name)

    def body(self, method: str, request_id: int = 1, **params: Any) -> bytes:
        # A progress token, so that a tool reporting progress answers with an SSE stream.
        progress = {"progressToken": "p-1"}
        params["_meta"] = progress if self.session_id else {**modern_meta(), **progress}
        return rpc(method, request_id, **params)

    def call(self, tool: str) -> tuple[dict[str, str], bytes]:
        return self.headers("tools/call", tool), self.body("tools/call", name=tool, arguments={})


async def begin(server: McpServer, era_name: str) -> Era:
    """The era's set-up (a session in the handshake era), its connections closed again."""
    era = Era(era_name)
    if era_name == "handshake":
        era.session_id = await open_session(server)
    await settled(lambda: len(server.http.transports), 0)
    await anyio.wait_all_tasks_blocked()
    return era


async def served_others(server: McpServer, era: Era) -> list[dict[str, Any]]:
    """Another client's tools/list on a fresh connection, answered in full."""
    headers = era.headers("tools/list")
    reply = await exchange(server, "POST", headers, era.body("tools/list", 7))
    assert reply.status == 200, reply
    listed: dict[str, Any] = reply.json()
    tools: list[dict[str, Any]] = listed["result"]["tools"]
    return tools


async def end_session(server: McpServer, era: Era) -> None:
    if era.session_id is not None:
        headers = {"Mcp-Session-Id": era.session_id, "MCP-Protocol-Version": LATEST}
        reply = await exchange(server, "DELETE", headers)
        assert reply.status in (200, 204), reply


# --- the tools a phase needs ----------------------------------------------------------------


class Tools:
    def __init__(self) -> None:
        self.gate = Gate()
        self.held = StreamingGate()

    async def big(self, args: dict[str, Any], ctx: Any) -> str:
        return BIG

    def catalogue(self) -> Catalogue:
        schema = {"type": "object", "properties": {}}
        return Catalogue(
            [
                *self.gate.catalogue().tools.values(),
                Tool("held", "Streams, then blocks", schema, self.held.handler),
                Tool("big", "Answers with 8 MiB of text", schema, self.big),
            ]
        )

    def release(self) -> None:
        self.gate.release.set()
        self.held.release.set()


# --- the phases a client may leave in ----------------------------------------------------


Phase = Callable[[McpServer, Wire, Era, Tools], Awaitable[None]]


async def before_the_request_line(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    await anyio.wait_all_tasks_blocked()


async def mid_header(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    await wire.send(b"POST /v1/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
    await anyio.wait_all_tasks_blocked()


async def after_a_malformed_request(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    await wire.send(b"\n")


async def while_its_400_is_written(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    await wire.send(b"GARBAGE\r\n\r\n")
    assert (await wire.head()).status == 400


async def mid_body(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    headers, body = era.call("gate")
    await wire.request("POST", ENDPOINT, {**headers, "Content-Length": str(len(body) + 100)})
    await wire.send(body)
    await anyio.wait_all_tasks_blocked()


async def after_a_whole_request(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    headers, body = era.call("gate")
    await wire.request("POST", ENDPOINT, headers, body)


async def mid_response(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    headers, body = era.call("big")
    await wire.request("POST", ENDPOINT, headers, body)
    assert (await wire.head()).status == 200


async def during_a_long_call(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    headers, body = era.call("gate")
    await wire.request("POST", ENDPOINT, headers, body)
    await bounded(tools.gate.entered)


async def mid_sse_stream(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    headers, body = era.call("held")
    await wire.request("POST", ENDPOINT, headers, body)
    async with aclosing(wire.events(await wire.head())) as events:
        with anyio.fail_after(READ_BOUND):
            while not (await anext(events)).data:
                pass


async def during_the_lingering_close(server: McpServer, wire: Wire, era: Era, tools: Tools) -> None:
    headers, body = era.call("gate")
    await wire.request("POST", ENDPOINT, {**headers, "Content-Length": str(10 * 1024 * 1024)})
    await wire.send(body)
    assert (await wire.head()).status == 413


async def on_the_standalone_get_stream(
    server: McpServer, wire: Wire, era: Era, tools: Tools
) -> None:
    assert era.session_id is not None
    headers = {
        "Accept": "text/event-stream",
        "Mcp-Session-Id": era.session_id,
        "MCP-Protocol-Version": LATEST,
    }
    await wire.request("GET", ENDPOINT, headers)
    assert (await wire.head()).status == 200


PHASES: dict[str, Phase] = {
    "before the request line": before_the_request_line,
    "mid-header": mid_header,
    "after a malformed request, before its 400": after_a_malformed_request,
    "while its 400 is written": while_its_400_is_written,
    "mid-body": mid_body,
    "after a whole request, before its response": after_a_whole_request,
    "mid-response": mid_response,
    "during a long call": during_a_long_call,
    "mid-SSE stream": mid_sse_stream,
    "during the lingering close": during_the_lingering_close,
    "on the standalone GET stream": on_the_standalone_get_stream,
}
MATRIX = [
    pytest.param(phase, leave, era, id=f"{era}: {phase}: {leave}")
    for phase in PHASES
    for leave in LEAVES
    for era in ERAS
    if not (phase == "on the standalone GET stream" and era == "stateless")
]


# --- the ways a client may leave -----------------------------------------------------------


async def leave(wire: Wire, how: str) -> None:
    """FIN and RST close the socket; a half-close sends FIN and then nothing more, keeping
    the socket open (the caller closes it once the server has let go)."""
    if how == "RST":
        raw = wire.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if how == "half-close then silence":
        await wire.send_eof()
        return
    await wire.aclose()


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize(("phase", "how", "era_name"), MATRIX)
async def test_a_client_that_leaves_ends_only_its_own_connection_and_leaves_nothing_behind(
    phase: str, how: str, era_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    tools = Tools()
    async with running(Limits(linger_timeout=30.0), tools.catalogue()) as server:
        era = await begin(server, era_name)
        await anyio.wait_all_tasks_blocked()
        baseline = held(server)
        async with connect(server) as wire:
            await PHASES[phase](server, wire, era, tools)
            await leave(wire, how)
            meanwhile = await served_others(server, era)
            connections = await settled(lambda: server.http.open_connections, 0)
        tools.release()
        later = await served_others(server, era)
        await end_session(server, era)
        after = await settled_at(server, baseline)
    assert meanwhile == later and len(later) == 3
    assert connections == 0
    assert after == replace(baseline, sessions=0)
    assert server_errors(caplog) == []


async def test_a_stray_newline_then_close_a_thousand_times_never_stops_real_calls() -> None:
    async with running() as server:
        era = await begin(server, "stateless")
        answered = 0
        for round_ in range(1000):
            async with connect(server) as wire:
                await wire.send(b"\n")
            if round_ % 10 == 0:
                await served_others(server, era)
                answered += 1
        baseline_connections = await settled(lambda: server.http.open_connections, 0)
        await served_others(server, era)
    assert (answered, baseline_connections) == (100, 0)


async def test_a_client_that_reads_nothing_of_a_long_response_is_cut_off_after_send_timeout() -> (
    None
):
    tools = Tools()
    async with running(Limits(send_timeout=0.2), tools.catalogue()) as server:
        era = await begin(server, "stateless")
        headers, body = era.call("big")
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, headers, body)
            connections = await settled(lambda: server.http.open_connections, 0)
        await served_others(server, era)
    assert connections == 0


# --- faults inside each step of the request path --------------------------------------------


async def replies_to_one_request(wire: Wire) -> list[Reply]:
    """Its response, or none when the connection was closed without one."""
    try:
        return [await wire.final()]
    except Truncated:
        return []


class Injected(RuntimeError):
    """A fault raised on purpose; its text must never reach a client."""


def boom(*args: Any, **kwargs: Any) -> Any:
    raise Injected("secret internal detail")


async def async_boom(*args: Any, **kwargs: Any) -> Any:
    raise Injected("secret internal detail")


STEPS: dict[str, Callable[[McpServer], tuple[object, str, Any]]] = {
    "parse": lambda server: (H1Core, "receive", boom),
    "route": lambda server: (McpService, "_route", async_boom),
    "auth": lambda server: (server.service, "authenticate", boom),
    "encode": lambda server: (McpService, "_encode_result", boom),
    "write": lambda server: (H1Core, "whole", boom),
    "close": lambda server: (H1Core, "client_may_be_sending", boom),
}


async def done(args: dict[str, Any], ctx: Any) -> str:
    return "done"


def fault_tools(step: str) -> Catalogue:
    schema = {"type": "object", "properties": {}}
    handler = async_boom if step == "handler" else done
    return Catalogue([Tool("work", "Raises when told to", schema, handler)])


@pytest.mark.parametrize("step", [*STEPS, "handler"])
@pytest.mark.parametrize("era_name", ERAS)
async def test_a_fault_in_any_step_of_the_request_path_ends_only_that_request(
    step: str, era_name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(catalogue=fault_tools(step)) as server:
        era = await begin(server, era_name)
        await anyio.wait_all_tasks_blocked()
        baseline = held(server)
        if step in STEPS:
            owner, name, fault = STEPS[step](server)
            monkeypatch.setattr(owner, name, fault)
        headers, body = era.call("work")
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, headers, body)
            replies = await replies_to_one_request(wire)
        await settled(lambda: len(server.http.transports), baseline.transports)
        monkeypatch.undo()
        after = await settled_at(server, baseline)
        later = await served_others(server, era)
    assert len(later) == 1
    assert all(b"secret internal detail" not in reply.body for reply in replies)
    assert [reply.status for reply in replies] in ([500], [], [200])
    if replies and replies[0].status == 200:
        # A fault while closing comes after a whole answer; any other is an internal error.
        answer = replies[0].json()
        assert "result" in answer if step == "close" else answer["error"]["code"] == -32603
    assert after == baseline
    logged = server_errors(caplog)
    assert len(logged) == 1 and "secret" not in logged[0]


DOORS = {
    "a stray newline": b"\n",
    "a garbage request line": b"GARBAGE / NOTHTTP\r\n\r\n",
    "a body over the size limit": (
        b"POST /v1/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"
    ),
    "an oversized header block": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"a" * 20000
    + b"\r\n\r\n",
    "a bad chunk size": (
        b"POST /v1/mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    ),
    "Connection: close then more bytes": (
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n"
    ),
}


@pytest.mark.parametrize("how", ["FIN", "RST"])
@pytest.mark.parametrize("door", DOORS)
async def test_a_refused_request_whose_client_leaves_at_once_never_stops_the_server(
    door: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running() as server:
        era = await begin(server, "stateless")
        before = await served_others(server, era)
        for _ in range(50):
            async with connect(server) as wire:
                await wire.send(DOORS[door])
                await leave(wire, how)
        connections = await settled(lambda: server.http.open_connections, 0)
        listed = await served_others(server, era)
    assert (connections, listed) == (0, before)
    assert server_errors(caplog) == []
