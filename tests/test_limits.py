"""Every configurable limit, driven over real sockets: each refuses with its own status and a
one-line reason (or, for the idle timeout, closes without a word), and nothing a limit guards
grows without bound: connections, sessions, streams and replay buffers return to where they
started, in counts and in traced memory."""

from __future__ import annotations

import gc
import re
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from sp00ky_mcp.engine import service as service_module
from sp00ky_mcp.engine.config import Limits
from sp00ky_mcp.engine.runtime import MAX_RETAINED_STREAMS
from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.engine.sessions import Session
from sp00ky_mcp.product.store import Store
from tests.faults_support import back_to, footprint, settled, task_count
from tests.product_support import product_server
from tests.wire import (
    ENDPOINT,
    LATEST,
    Gate,
    Reply,
    Wire,
    bearer_auth,
    bounded,
    connect,
    encode_request,
    exchange,
    initialize_body,
    local_sessions,
    modern_headers,
    modern_meta,
    open_session,
    post_headers,
    rpc,
    rpc_error,
    running,
)

pytestmark = pytest.mark.anyio

PLAIN = ("content-type", "text/plain; charset=utf-8")
CLOSE = ("connection", "close")
BODY_TOO_LARGE = b"The request body is larger than the server accepts.\n"
HEAD_TOO_LARGE = b"The request header fields are larger than the server accepts.\n"
UNMET_EXPECTATION = (
    b"The server meets no expectation but 100-continue; send the request without that Expect "
    b"field.\n"
)
HEADERS_TIMED_OUT = b"Timed out reading the request headers.\n"
BODY_TIMED_OUT = b"Timed out reading the request body.\n"
BUSY = b"The server has too many open connections; retry shortly.\n"
TOO_MANY_CALLS = (
    b"Too many concurrent tool calls for this token; retry after the seconds in Retry-After.\n"
)
TOO_MANY = "Too many requests for this token; retry after the number of seconds in Retry-After.\n"
SESSION_GONE = rpc_error(
    None,
    -32600,
    "Session not found: it ended or expired; send initialize to start a new session.",
)
KEEPALIVE = b": keep-alive\n\n"
PRIMING = re.compile(rb"id: ([0-9a-f]{16})_0\nretry: 1000\ndata: \n\n")
# What a load may leave behind in traced memory once it is over: allocator noise and warm
# caches, far less than one more round of the load would add if it leaked.
MEMORY_SLACK = 16 * 1024
# Deep enough to reach the server's frame under the event loop, anyio and the stdlib.
TRACED_FRAMES = 32

OVERSIZED_BODY = encode_request("POST", ENDPOINT, post_headers(), b"x" * 65)
OVERSIZED_HEAD = encode_request("GET", ENDPOINT, {"X-Padding": "p" * 1500})
UNKNOWN_EXPECTATION = encode_request("POST", ENDPOINT, {**post_headers(), "Expect": "200-ok"})
STALLED_HEAD = encode_request("POST", ENDPOINT, post_headers())[:40]
STALLED_BODY = encode_request(
    "POST", ENDPOINT, {**post_headers(), "Content-Length": "100"}, b'{"jsonrpc":'
)


def live_session(server: McpServer, session_id: str) -> Session:
    """The session `session_id`, which must still be open."""
    found = local_sessions(server.service).peek(session_id)
    assert found is not None
    return found


def length(body: bytes) -> tuple[str, str]:
    return ("content-length", str(len(body)))


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def get_headers(session_id: str, token: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "Accept": "text/event-stream",
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": LATEST,
        **auth(token),
        **{name.replace("_", "-"): value for name, value in extra.items()},
    }


async def ping(server: McpServer, session_id: str, token: str | None = None) -> Reply:
    headers = {**post_headers(session_id, LATEST), **auth(token)}
    return await exchange(server, "POST", headers, rpc("ping", 5))


async def next_client(server: McpServer) -> int:
    """The status a small request on a fresh connection gets: 404 for a path the server does
    not serve, which shows that it is serving."""
    async with connect(server) as wire:
        await wire.request("GET", "/elsewhere")
        return (await wire.final()).status


async def refused(server: McpServer, sent: bytes) -> Reply:
    """Sends `sent` on a fresh connection; the response, once the server has closed."""
    async with connect(server) as wire:
        await wire.send(sent)
        reply = await wire.final()
        assert await wire.closed()
    return reply


async def sse_head(wire: Wire, headers: dict[str, str]) -> Any:
    await wire.request("GET", ENDPOINT, headers)
    head = await wire.head()
    assert head.status == 200, head
    return head


async def trigger_tool_change(server: McpServer, session_id: str, request_id: int) -> None:
    call = rpc("tools/call", request_id, name="test_trigger_tool_change", arguments={})
    reply = await exchange(server, "POST", post_headers(session_id, LATEST), call)
    assert reply.status == 200, reply


# --- request limits: each answers its status, says why in one line, and closes ---------------

REQUEST_LIMITS = {
    "a body over max_body_bytes": (Limits(max_body_bytes=64), OVERSIZED_BODY, 413, BODY_TOO_LARGE),
    "a header block over max_header_bytes": (
        Limits(max_header_bytes=1024),
        OVERSIZED_HEAD,
        431,
        HEAD_TOO_LARGE,
    ),
    "an expectation other than 100-continue": (
        Limits(),
        UNKNOWN_EXPECTATION,
        417,
        UNMET_EXPECTATION,
    ),
    "headers stalled past header_timeout": (
        Limits(header_timeout=0.1),
        STALLED_HEAD,
        408,
        HEADERS_TIMED_OUT,
    ),
    "a body stalled past body_timeout": (
        Limits(body_timeout=0.1),
        STALLED_BODY,
        408,
        BODY_TIMED_OUT,
    ),
}


@pytest.mark.parametrize(
    ("limits", "sent", "status", "reason"),
    list(REQUEST_LIMITS.values()),
    ids=list(REQUEST_LIMITS),
)
async def test_a_request_over_a_limit_gets_its_status_with_a_one_line_reason_and_the_next_is_served(
    limits: Limits, sent: bytes, status: int, reason: bytes
) -> None:
    async with running(limits) as server:
        reply = await refused(server, sent)
        connections = await settled(lambda: server.http.open_connections, 0)
        after = await next_client(server)
    assert reply.status == status
    assert reply.head.headers == (PLAIN, CLOSE, length(reason))
    assert reply.body == reason
    assert connections == 0
    assert after == 404


@pytest.mark.parametrize("when", ["before its first request", "after a response"])
async def test_an_idle_connection_is_closed_without_a_byte_after_the_idle_timeout(
    when: str,
) -> None:
    async with running(Limits(idle_timeout=0.1)) as server, connect(server) as wire:
        replies = []
        if when == "after a response":
            await wire.request("GET", "/elsewhere")
            replies.append((await wire.final()).status)
        assert await wire.closed()
        connections = await settled(lambda: server.http.open_connections, 0)
    assert replies == ([404] if when == "after a response" else [])
    assert connections == 0


async def test_a_connection_over_max_connections_gets_503_with_retry_after_then_is_served() -> None:
    async with running(Limits(max_connections=2)) as server:
        async with connect(server) as first, connect(server) as second:
            for wire in (first, second):
                await wire.request("GET", "/elsewhere")
                assert (await wire.final()).status == 404
            busy = await refused(server, b"")
        freed = await settled(lambda: server.http.open_connections, 0)
        after = await next_client(server)
    assert (busy.status, busy.head.reason) == (503, "Service Unavailable")
    assert busy.head.headers == (PLAIN, ("retry-after", "1"), CLOSE, length(BUSY))
    assert busy.body == BUSY
    assert freed == 0
    assert after == 404


async def test_refused_and_timed_out_connections_leave_no_connection_task_or_fd_behind() -> None:
    """Eight stalled clients fill the connection cap, eight more are turned away while they
    stall, then eight oversized bodies and eight oversized heads: each gets its status, and
    afterwards the server holds exactly what it held before."""
    limits = Limits(max_connections=8, header_timeout=0.2, max_body_bytes=64, max_header_bytes=1024)
    async with running(limits) as server:
        baseline = await footprint(server)
        statuses: list[int] = []

        async def stall(wire: Wire) -> None:
            statuses.append((await wire.final()).status)

        async with anyio.create_task_group() as stalled:
            wires = []
            for _ in range(8):
                wire = Wire(await anyio.connect_tcp("127.0.0.1", server.port or 0), "x")
                await wire.send(STALLED_HEAD)
                wires.append(wire)
            await settled(lambda: 8 - server.http.open_connections, 0)
            busy = [(await refused(server, b"")).status for _ in range(8)]
            for wire in wires:
                stalled.start_soon(stall, wire)
        for wire in wires:
            await wire.aclose()
        for sent in (OVERSIZED_BODY, OVERSIZED_HEAD):
            statuses += [(await refused(server, sent)).status for _ in range(8)]
        after = await back_to(server, baseline)
    assert busy == [503] * 8
    assert statuses == [408] * 8 + [413] * 8 + [431] * 8
    assert after == baseline


# --- sessions: per token and overall, least recently used evicted, idle TTL ------------------


async def test_a_tokens_sessions_over_its_cap_evict_its_least_recently_used_which_gets_404() -> (
    None
):
    async with running(Limits(max_sessions_per_principal=2), authenticate=bearer_auth) as server:
        oldest = await open_session(server, token="ada")
        idle = await open_session(server, token="ada")
        bobs = await open_session(server, token="bob")
        assert (await ping(server, oldest, "ada")).status == 200
        newest = await open_session(server, token="ada")
        evicted = await ping(server, idle, "ada")
        kept = [(await ping(server, s, t)).status for s, t in ((oldest, "ada"), (newest, "ada"))]
        other = await ping(server, bobs, "bob")
        count = len(local_sessions(server.service))
    assert (evicted.status, evicted.json()) == (404, SESSION_GONE)
    assert kept == [200, 200]
    assert other.status == 200
    assert count == 3


async def test_sessions_over_the_global_cap_evict_the_least_recently_used_of_anyone() -> None:
    async with running(Limits(max_sessions=2), authenticate=bearer_auth) as server:
        adas = await open_session(server, token="ada")
        bobs = await open_session(server, token="bob")
        assert (await ping(server, adas, "ada")).status == 200
        cys = await open_session(server, token="cy")
        evicted = await ping(server, bobs, "bob")
        kept = [(await ping(server, s, t)).status for s, t in ((adas, "ada"), (cys, "cy"))]
        count = len(local_sessions(server.service))
    assert (evicted.status, evicted.json()) == (404, SESSION_GONE)
    assert kept == [200, 200]
    assert count == 2


async def test_an_evicted_sessions_open_get_stream_is_ended() -> None:
    limits = Limits(max_sessions_per_principal=1)
    async with running(limits, authenticate=bearer_auth) as server, connect(server) as wire:
        first = await open_session(server, token="ada")
        head = await sse_head(wire, get_headers(first, "ada"))
        async with aclosing(wire.events(head)) as events:
            priming = await anext(events)
            await open_session(server, token="ada")
            rest = [event async for event in events]
    assert priming.data == ""
    assert rest == []


class ShiftedTime:
    """The `time` module as the service sees it, with a monotonic clock the test moves on."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ShiftedTime:
    shifted = ShiftedTime()
    monkeypatch.setattr(service_module, "time", shifted)
    return shifted


async def test_a_session_idle_past_its_ttl_answers_404_and_one_used_within_it_lives_on(
    clock: ShiftedTime,
) -> None:
    async with running(Limits(session_idle_ttl=60)) as server:
        used = await open_session(server)
        idle = await open_session(server)
        clock.offset += 40
        assert (await ping(server, used)).status == 200
        clock.offset += 40
        expired = await ping(server, idle)
        alive = await ping(server, used)
        count = len(local_sessions(server.service))
    assert (expired.status, expired.json()) == (404, SESSION_GONE)
    assert alive.status == 200
    assert count == 1


async def test_a_handler_waiting_in_a_session_that_expired_is_ended(clock: ShiftedTime) -> None:
    async with running(Limits(session_idle_ttl=60, shutdown_grace=0.2)) as server:
        session_id = await open_session(server, capabilities={"elicitation": {}})
        baseline = await footprint(server)
        call = rpc("tools/call", 3, name="test_elicitation", arguments={"message": "Name?"})
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, post_headers(session_id, LATEST), call)
            head = await wire.head()
            async with aclosing(wire.events(head)) as events:
                asked = [await anext(events), await anext(events)]
        clock.offset += 61
        expired = await ping(server, session_id)
        tasks = await settled(task_count, baseline.tasks, bound=0.5)
    assert asked[1].json()["method"] == "elicitation/create"
    assert expired.status == 404
    assert tasks == baseline.tasks


# --- SSE: bounded replay, bounded streams per session, keep-alive comments -------------------


async def test_a_resumed_stream_replays_only_the_last_sse_replay_events_events() -> None:
    async with running(Limits(sse_replay_events=4)) as server:
        session_id = await open_session(server)
        async with connect(server) as wire:
            head = await sse_head(wire, get_headers(session_id))
            async with aclosing(wire.events(head)) as events:
                priming = await anext(events)
        assert priming.id is not None
        stream_id = priming.id.rsplit("_", 1)[0]
        for request_id in range(10):
            await trigger_tool_change(server, session_id, request_id)
        async with connect(server) as wire:
            head = await sse_head(wire, get_headers(session_id, Last_Event_ID=f"{stream_id}_0"))
            async with aclosing(wire.events(head)) as events:
                replayed = [await anext(events) for _ in range(4)]
                await trigger_tool_change(server, session_id, 10)
                live = await anext(events)
        buffered = len(live_session(server, session_id).runtime.streams[stream_id].items)
    expected = [f"{stream_id}_{seq}" for seq in (7, 8, 9, 10)]
    assert [event.id for event in replayed] == expected
    assert {event.json()["method"] for event in replayed} == {"notifications/tools/list_changed"}
    assert live.id == f"{stream_id}_11"
    assert buffered == 4


async def test_a_session_keeps_at_most_its_retained_streams_and_the_oldest_cannot_be_resumed() -> (
    None
):
    calls = MAX_RETAINED_STREAMS + 8
    async with running() as server:
        session_id = await open_session(server)
        stream_ids = []
        for request_id in range(calls):
            call = rpc(
                "tools/call",
                request_id,
                name="test_tool_with_progress",
                arguments={},
                _meta={"progressToken": request_id},
            )
            async with connect(server) as wire:
                await wire.request("POST", ENDPOINT, post_headers(session_id, LATEST), call)
                events = [event async for event in wire.events(await wire.head())]
            assert events[0].id is not None
            stream_ids.append(events[0].id.rsplit("_", 1)[0])
        oldest = await exchange(
            server, "GET", get_headers(session_id, Last_Event_ID=f"{stream_ids[0]}_1")
        )
        retained = len(live_session(server, session_id).runtime.streams)
    assert len(set(stream_ids)) == calls
    assert retained == MAX_RETAINED_STREAMS
    assert oldest.status == 404


async def test_a_quiet_get_stream_carries_keep_alive_comments() -> None:
    async with running(Limits(sse_keepalive=0.05)) as server:
        session_id = await open_session(server)
        async with connect(server) as wire:
            await sse_head(wire, get_headers(session_id))
            async with aclosing(wire._chunks()) as chunks:
                received = [await anext(chunks) for _ in range(3)]
    assert PRIMING.fullmatch(received[0]), received[0]
    assert received[1:] == [KEEPALIVE, KEEPALIVE]


async def test_a_quiet_listen_stream_carries_keep_alive_comments() -> None:
    listen = rpc(
        "subscriptions/listen",
        "l-1",
        notifications={"toolsListChanged": True},
        _meta=modern_meta(),
    )
    async with running(Limits(sse_keepalive=0.05)) as server, connect(server) as wire:
        await wire.request("POST", ENDPOINT, modern_headers("subscriptions/listen"), listen)
        assert (await wire.head()).status == 200
        async with aclosing(wire._chunks()) as chunks:
            received = [await anext(chunks) for _ in range(3)]
    assert b"notifications/subscriptions/acknowledged" in received[0]
    assert received[1:] == [KEEPALIVE, KEEPALIVE]


# --- per-token rate limit and concurrent calls ---------------------------------------------


async def test_a_token_past_its_rate_burst_gets_429_with_retry_after_and_other_tokens_are_served(
    store: Store, tmp_path: Path
) -> None:
    limits = Limits(rate_per_minute=60, rate_burst=3)
    async with product_server(store, tmp_path, limits) as product:
        user = await product.user()
        busy, calm = await product.token(user, name="busy"), await product.token(user, name="calm")
        allowed = [(await product.rpc(busy, "tools/list")).status_code for _ in range(3)]
        over = await product.rpc(busy, "tools/list")
        other = await product.rpc(calm, "tools/list")
    assert allowed == [200, 200, 200]
    assert (over.status_code, over.text) == (429, TOO_MANY)
    assert over.headers["retry-after"] == "1"
    assert over.headers["content-type"] == "text/plain; charset=utf-8"
    assert other.status_code == 200


async def test_a_tokens_tool_calls_over_max_calls_per_token_get_429_with_retry_after() -> None:
    gate = Gate()
    limits = Limits(max_calls_per_token=1)

    def call(request_id: int, token: str) -> tuple[dict[str, str], bytes]:
        body = rpc("tools/call", request_id, name="gate", arguments={}, _meta=modern_meta())
        return {**modern_headers("tools/call", "gate"), **auth(token)}, body

    async with running(limits, gate.catalogue(), bearer_auth) as server:
        async with connect(server) as held, connect(server) as others:
            await held.request("POST", ENDPOINT, *call(1, "ada"))
            await bounded(gate.entered)
            over = await exchange(server, "POST", *call(2, "ada"))
            await others.request("POST", ENDPOINT, *call(3, "bob"))
            gate.release.set()
            finished = [(await held.final()).status, (await others.final()).status]
        again = await exchange(server, "POST", *call(4, "ada"))
        in_flight = server.service.quotas.held()
    assert (over.status, over.body) == (429, TOO_MANY_CALLS)
    assert over.head.get("retry-after") == "1"
    assert finished == [200, 200]
    assert again.status == 200
    assert in_flight == {}


# --- nothing grows without bound: traced memory returns to its baseline ---------------------


# What the server's own code allocated, less the tables of weak references: they keep
# nothing alive, and one of them (anyio's registry of tasks, process-wide) is enlarged once
# when the tasks alive at once pass a mark the earlier tests in the process happened to set.
SERVER_HELD = [
    tracemalloc.Filter(True, f"{Path(service_module.__file__).parents[1]}/*", all_frames=True),
    tracemalloc.Filter(False, "*/weakref.py"),
    tracemalloc.Filter(False, "*/_weakrefset.py"),
]


@contextmanager
def traced_memory() -> Iterator[Callable[[], int]]:
    """Traces allocations; yields a probe of the bytes still allocated after a collection by
    the server's code (see `SERVER_HELD`): what the test client and runner allocate is not
    the server keeping memory."""

    def allocated() -> int:
        gc.collect()
        held = tracemalloc.take_snapshot().filter_traces(SERVER_HELD)
        return sum(stat.size for stat in held.statistics("filename"))

    tracemalloc.start(TRACED_FRAMES)
    try:
        yield allocated
    finally:
        tracemalloc.stop()


Load = Callable[[McpServer], Awaitable[None]]


def sessions_over_the_cap() -> Load:
    async def load(server: McpServer) -> None:
        for _ in range(150):
            reply = await exchange(server, "POST", post_headers(), initialize_body())
            assert reply.status == 200
        assert len(local_sessions(server.service)) == 8

    return load


def events_over_the_replay_buffer() -> Load:
    """Server-wide announcements, each kept on the standalone stream of one session that
    nobody listens to any more."""
    session: list[str] = []

    async def load(server: McpServer) -> None:
        if not session:
            session.append(await open_session(server))
            async with connect(server) as wire:
                await sse_head(wire, get_headers(session[0]))
        for _ in range(1000):
            server.service.announce("notifications/tools/list_changed", {})
        standalone = live_session(server, session[0]).runtime.standalone
        assert len(standalone.items) == 8

    return load


def bodies_over_the_limit() -> Load:
    async def load(server: McpServer) -> None:
        for _ in range(60):
            assert (await refused(server, OVERSIZED_BODY)).status == 413

    return load


LOADS: dict[str, tuple[Limits, Callable[[], Load]]] = {
    "sessions over max_sessions": (Limits(max_sessions=8), sessions_over_the_cap),
    "events over sse_replay_events": (Limits(sse_replay_events=8), events_over_the_replay_buffer),
    "bodies over max_body_bytes": (Limits(max_body_bytes=64), bodies_over_the_limit),
}


@pytest.mark.parametrize(("limits", "make_load"), list(LOADS.values()), ids=list(LOADS))
async def test_a_second_round_of_load_over_a_limit_leaves_memory_where_the_first_left_it(
    limits: Limits, make_load: Callable[[], Load]
) -> None:
    """The first round warms caches and fills the bounded structures to their caps; if the
    limit holds, the second round only replaces what is there."""
    load = make_load()
    async with running(limits) as server:
        with traced_memory() as allocated:
            await load(server)
            await footprint(server)
            baseline = allocated()
            await load(server)
            await footprint(server)
            grown = allocated() - baseline
    assert grown < MEMORY_SLACK, f"{grown} bytes more after the second round"
