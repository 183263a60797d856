"""Streamable HTTP on the wire, both eras on one endpoint: sessions, header rules, JSON-RPC
errors, SSE replies with progress, cancellation, server-to-client requests and resumption
(handshake era), and the stateless 2026-07-28 rules, MRTR and subscriptions/listen."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from sp00ky_mcp.engine.catalogue import Catalogue, Tool
from sp00ky_mcp.engine.fixtures import NAME_SCHEMA, USER_RESPONSE_SCHEMA
from sp00ky_mcp.engine.server import McpServer
from tests.wire import (
    BOTH,
    ENDPOINT,
    LATEST,
    MODERN,
    SERVER,
    SERVER_INFO,
    Event,
    Gate,
    Head,
    Reply,
    Wire,
    bearer_auth,
    bounded,
    connect,
    exchange,
    initialize_body,
    initialize_reply,
    modern_headers,
    modern_meta,
    notification,
    open_session,
    post_headers,
    rpc,
    rpc_error,
    running,
)

pytestmark = pytest.mark.anyio

JSON_TYPE = ("content-type", "application/json")
PLAIN_TYPE = ("content-type", "text/plain; charset=utf-8")
SSE_HEADERS = (
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
    ("transfer-encoding", "chunked"),
)
ACCEPTED = (("content-length", "0"),)
SUPPORTED = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"]
NO_SESSION_ID = (
    "Bad Request: the Mcp-Session-Id header is required; send initialize first to get one."
)
SESSION_NOT_FOUND = (
    "Session not found: it ended or expired; send initialize to start a new session."
)
BAD_CURSOR = "Invalid cursor: pass back a nextCursor value exactly as received."
BAD_STATE = (
    "Invalid requestState: it failed its integrity check or expired; retry the original "
    "request without it."
)
STREAM_ID = re.compile(r"[0-9a-f]{16}_(\d+)")
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"


def length(body: bytes) -> tuple[str, str]:
    return ("content-length", str(len(body)))


def text_result(text: str, **extra: Any) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": False, **extra}


def message(data: dict[str, Any]) -> bytes:
    """The SSE framing of one JSON-RPC message, as the server writes it."""
    return b"event: message\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def assert_event(event: Event, stream: str, seq: int, data: dict[str, Any]) -> None:
    assert event.raw == f"id: {stream}_{seq}\n".encode() + message(data)
    assert event.json() == data


def assert_priming(event: Event) -> str:
    """A priming event: an id, a retry hint and empty data.  Returns the stream id."""
    assert event.id is not None
    match = STREAM_ID.fullmatch(event.id)
    assert match is not None and match.group(1) == "0", event.id
    assert event.raw == f"id: {event.id}\nretry: 1000\ndata: \n\n".encode()
    return event.id.rsplit("_", 1)[0]


async def post(
    server: McpServer,
    body: bytes,
    session_id: str | None = None,
    version: str | None = LATEST,
    **headers: str,
) -> Reply:
    return await exchange(server, "POST", post_headers(session_id, version, **headers), body)


async def sse_post(wire: Wire, session_id: str, body: bytes) -> Head:
    await wire.request("POST", ENDPOINT, post_headers(session_id, LATEST), body)
    head = await wire.head()
    assert (head.status, head.headers) == (200, SSE_HEADERS)
    return head


def progress_call(request_id: Any, token: str) -> bytes:
    return rpc(
        "tools/call",
        request_id,
        name="test_tool_with_progress",
        arguments={},
        _meta={"progressToken": token},
    )


# --- sessions -------------------------------------------------------------------------------


async def test_initialize_answers_in_json_with_a_visible_ascii_session_id(
    conformance_server: McpServer,
) -> None:
    reply = await post(conformance_server, initialize_body(), version=None)
    session_id = reply.head.get("mcp-session-id")
    assert reply.status == 200
    assert reply.head.names == ["content-type", "mcp-session-id", "content-length"]
    assert reply.head.get("content-type") == "application/json"
    assert session_id is not None and len(session_id) >= 32
    assert all(0x21 <= ord(c) <= 0x7E for c in session_id)
    assert reply.json() == initialize_reply()


async def test_initialize_negotiates_an_older_supported_version_and_falls_back_otherwise(
    conformance_server: McpServer,
) -> None:
    older = await post(conformance_server, initialize_body("2025-03-26"), version=None)
    unknown = await post(conformance_server, initialize_body("1999-01-01"), version=None)
    assert older.json() == initialize_reply("2025-03-26")
    assert unknown.json() == initialize_reply(LATEST)


async def test_a_request_without_a_session_id_gets_400(conformance_server: McpServer) -> None:
    reply = await post(conformance_server, rpc("tools/list"))
    assert reply.status == 400
    assert reply.head.headers == (JSON_TYPE, length(reply.body))
    assert reply.json() == rpc_error(None, -32600, NO_SESSION_ID)


async def test_an_unknown_session_id_gets_404(conformance_server: McpServer) -> None:
    reply = await post(conformance_server, rpc("tools/list"), "no-such-session")
    assert reply.status == 404
    assert reply.json() == rpc_error(None, -32600, SESSION_NOT_FOUND)


async def test_a_deleted_session_answers_404_afterwards(conformance_server: McpServer) -> None:
    session_id = await open_session(conformance_server)
    deleted = await exchange(
        conformance_server, "DELETE", {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": LATEST}
    )
    reused = await post(conformance_server, rpc("ping"), session_id)
    deleted_again = await exchange(conformance_server, "DELETE", {"Mcp-Session-Id": session_id})
    assert (deleted.status, deleted.head.headers, deleted.body) == (200, ACCEPTED, b"")
    assert reused.status == 404
    assert reused.json() == rpc_error(None, -32600, SESSION_NOT_FOUND)
    assert deleted_again.status == 404


async def test_a_session_is_unknown_to_a_token_other_than_the_one_that_created_it() -> None:
    async with running(authenticate=bearer_auth) as server:
        session_id = await open_session(server, token="token-a")
        as_b = await post(server, rpc("ping", 1), session_id, Authorization="Bearer token-b")
        delete_as_b = await exchange(
            server, "DELETE", {"Mcp-Session-Id": session_id, "Authorization": "Bearer token-b"}
        )
        as_a = await post(server, rpc("ping", 2), session_id, Authorization="Bearer token-a")
    assert as_b.status == 404
    assert as_b.json() == rpc_error(None, -32600, SESSION_NOT_FOUND)
    assert delete_as_b.status == 404
    assert (as_a.status, as_a.json()) == (200, {"jsonrpc": "2.0", "id": 2, "result": {}})


async def test_a_request_the_authenticator_refuses_gets_its_401_in_plain_text() -> None:
    async with running(authenticate=bearer_auth) as server:
        reply = await post(server, initialize_body(), version=None)
    body = b"Unauthorized: send a bearer token.\n"
    assert reply.status == 401
    assert reply.head.headers == (PLAIN_TYPE, ("www-authenticate", "Bearer"), length(body))
    assert reply.body == body


# --- header rules ---------------------------------------------------------------------------


async def test_an_unsupported_protocol_version_header_gets_400(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    reply = await post(conformance_server, rpc("ping"), session_id, "2024-01-01")
    assert reply.status == 400
    assert reply.json() == rpc_error(
        None,
        -32600,
        "Bad Request: unsupported MCP-Protocol-Version '2024-01-01'; "
        "supported: 2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26.",
    )


async def test_an_absent_protocol_version_header_is_accepted(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    reply = await post(conformance_server, rpc("ping", 3), session_id, version=None)
    assert (reply.status, reply.json()) == (200, {"jsonrpc": "2.0", "id": 3, "result": {}})


async def test_an_accept_header_without_event_stream_gets_406(
    conformance_server: McpServer,
) -> None:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    reply = await exchange(conformance_server, "POST", headers, initialize_body())
    assert reply.status == 406
    assert reply.json() == rpc_error(
        None,
        -32600,
        "Not Acceptable: the Accept header must list both application/json and text/event-stream.",
    )


async def test_a_text_plain_body_gets_415(conformance_server: McpServer) -> None:
    headers = {"Accept": BOTH, "Content-Type": "text/plain"}
    reply = await exchange(conformance_server, "POST", headers, initialize_body())
    assert reply.status == 415
    assert reply.json() == rpc_error(
        None, -32600, "Unsupported Media Type: send the body as application/json."
    )


async def test_a_foreign_origin_gets_403(conformance_server: McpServer) -> None:
    reply = await post(
        conformance_server, initialize_body(), version=None, Origin="http://evil.example"
    )
    body = b"Forbidden: this Origin is not allowed; add it with --allowed-origin.\n"
    assert reply.status == 403
    assert reply.head.headers == (PLAIN_TYPE, length(body))
    assert reply.body == body


async def test_a_foreign_host_gets_421(conformance_server: McpServer) -> None:
    reply = await post(conformance_server, initialize_body(), version=None, Host="evil.example.com")
    body = (
        b"Misdirected request: the Host header names a host this server does not serve; "
        b"add it with --allowed-host.\n"
    )
    assert reply.status == 421
    assert reply.head.headers == (PLAIN_TYPE, length(body))
    assert reply.body == body


# --- messages ---------------------------------------------------------------------------------


async def test_a_notification_gets_202_with_an_empty_body(conformance_server: McpServer) -> None:
    session_id = await open_session(conformance_server)
    reply = await post(conformance_server, notification("notifications/initialized"), session_id)
    assert (reply.status, reply.head.headers, reply.body) == (202, ACCEPTED, b"")


async def test_a_response_to_an_unknown_request_id_gets_202(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    body = json.dumps({"jsonrpc": "2.0", "id": "s-99", "result": {}}).encode()
    reply = await post(conformance_server, body, session_id)
    assert (reply.status, reply.head.headers, reply.body) == (202, ACCEPTED, b"")


async def test_a_cancellation_naming_a_malformed_request_id_is_ignored(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    body = notification("notifications/cancelled", requestId={"not": "an id"})
    reply = await post(conformance_server, body, session_id)
    assert (reply.status, reply.body) == (202, b"")


async def test_a_batch_on_a_2025_03_26_session_is_answered_with_a_json_array(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server, "2025-03-26")
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "two", "method": "nope"},
        {"jsonrpc": "2.0", "id": True, "method": "ping"},
    ]
    reply = await post(conformance_server, json.dumps(batch).encode(), session_id, version=None)
    assert reply.status == 200
    assert reply.head.get("content-type") == "application/json"
    assert reply.json() == [
        {"jsonrpc": "2.0", "id": 1, "result": {}},
        rpc_error("two", -32601, "Method not found: 'nope'."),
        rpc_error(None, -32600, 'Invalid Request: "id" must be a string or an integer.'),
    ]


async def test_a_batch_on_a_2025_11_25_session_gets_400(conformance_server: McpServer) -> None:
    session_id = await open_session(conformance_server)
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}]
    reply = await post(conformance_server, json.dumps(batch).encode(), session_id)
    assert reply.status == 400
    assert reply.json() == rpc_error(
        None,
        -32600,
        "Invalid Request: JSON-RPC batches are not supported by protocol version 2025-11-25; "
        "send one message per request.",
    )


async def test_a_body_that_is_not_json_gets_400_with_a_parse_error(
    conformance_server: McpServer,
) -> None:
    reply = await post(conformance_server, b'{"jsonrpc": "2.0", "id": 1,', version=None)
    assert reply.status == 400
    assert reply.head.headers == (JSON_TYPE, length(reply.body))
    assert reply.json() == rpc_error(
        None, -32700, "Parse error: the request body is not valid JSON."
    )


async def test_a_body_nesting_too_deep_to_be_written_back_gets_400_and_the_server_goes_on(
    conformance_server: McpServer,
) -> None:
    shallow = initialize_body(capabilities={"experimental": {"x": "DEEP"}})
    body = shallow.replace(b'"DEEP"', b"[" * 300 + b"]" * 300)
    reply = await post(conformance_server, body, version=None)
    assert (reply.status, reply.json()) == (
        400,
        rpc_error(
            None,
            -32600,
            "Invalid Request: arrays and objects may nest at most 128 levels deep; "
            "send a flatter body.",
        ),
    )
    assert (await post(conformance_server, initialize_body(), version=None)).status == 200


async def test_a_boolean_id_is_an_invalid_request_answered_with_a_null_id(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    reply = await post(
        conformance_server, b'{"jsonrpc":"2.0","id":true,"method":"ping"}', session_id
    )
    assert reply.status == 400
    assert reply.json() == rpc_error(
        None, -32600, 'Invalid Request: "id" must be a string or an integer.'
    )


async def test_a_string_id_is_echoed_in_errors(conformance_server: McpServer) -> None:
    session_id = await open_session(conformance_server)
    unknown = await post(conformance_server, rpc("nope/nope", "req-1"), session_id)
    invalid = await post(
        conformance_server, b'{"jsonrpc":"1.0","id":"req-2","method":"ping"}', session_id
    )
    assert (unknown.status, unknown.json()) == (
        200,
        rpc_error("req-1", -32601, "Method not found: 'nope/nope'."),
    )
    assert (invalid.status, invalid.json()) == (
        400,
        rpc_error("req-2", -32600, 'Invalid Request: "jsonrpc" must be exactly "2.0".'),
    )


# --- pagination -------------------------------------------------------------------------------


async def _noop(args: dict[str, Any], ctx: Any) -> str:
    return "ok"


def many_tools(count: int) -> Catalogue:
    schema = {"type": "object", "properties": {}}
    return Catalogue([Tool(f"tool_{i:03}", f"Tool {i}", schema, _noop) for i in range(count)])


async def test_tools_list_pages_by_cursor_and_a_bad_cursor_gets_invalid_params() -> None:
    async with running(catalogue=many_tools(150)) as server:
        session_id = await open_session(server)
        first = (await post(server, rpc("tools/list", 1), session_id)).json()["result"]
        cursor = first["nextCursor"]
        second = (await post(server, rpc("tools/list", 2, cursor=cursor), session_id)).json()
        bad = await post(server, rpc("tools/list", "c", cursor="bm9wZToxMDA"), session_id)
    assert [tool["name"] for tool in first["tools"]] == [f"tool_{i:03}" for i in range(100)]
    assert isinstance(cursor, str)
    assert [tool["name"] for tool in second["result"]["tools"]] == [
        f"tool_{i:03}" for i in range(100, 150)
    ]
    assert "nextCursor" not in second["result"]
    assert (bad.status, bad.json()) == (200, rpc_error("c", -32602, BAD_CURSOR))


# --- SSE: the standalone stream, progress, cancellation, elicitation, resumption -----------


async def test_get_opens_the_standalone_stream_with_a_priming_event_and_a_second_get_gets_409(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id}
    headers["MCP-Protocol-Version"] = LATEST
    async with connect(conformance_server) as wire:
        await wire.request("GET", ENDPOINT, headers)
        head = await wire.head()
        async with aclosing(wire.events(head)) as events:
            stream = assert_priming(await anext(events))
            second = await exchange(conformance_server, "GET", headers)
            trigger = rpc("tools/call", 4, name="test_trigger_tool_change", arguments={})
            triggered = await post(conformance_server, trigger, session_id)
            changed = await anext(events)
    assert (head.status, head.headers) == (200, SSE_HEADERS)
    assert second.status == 409
    assert second.json() == rpc_error(
        None, -32600, "Conflict: this session already has an open GET stream."
    )
    assert triggered.json() == {
        "jsonrpc": "2.0",
        "id": 4,
        "result": text_result("tool list changed"),
    }
    notice = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {}}
    assert_event(changed, stream, 1, notice)


async def test_a_get_stream_whose_connection_closed_can_be_opened_again(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id}
    async with connect(conformance_server) as wire:
        await wire.request("GET", ENDPOINT, headers)
        assert (await wire.head()).status == 200
    http = conformance_server.http
    with anyio.fail_after(5):
        while http.open_connections:  # the server notices the disconnect
            await anyio.lowlevel.checkpoint()
    async with connect(conformance_server) as wire:
        await wire.request("GET", ENDPOINT, headers)
        again = await wire.head()
    assert again.status == 200


async def test_a_tool_with_a_progress_token_streams_progress_and_then_its_result(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    async with connect(conformance_server) as wire:
        head = await sse_post(wire, session_id, progress_call(5, "tok-1"))
        events = [event async for event in wire.events(head)]
    stream = assert_priming(events[0])
    for seq, done in enumerate((0, 50, 100), start=1):
        params = {
            "progressToken": "tok-1",
            "progress": done,
            "total": 100,
            "message": f"Completed step {done} of 100",
        }
        notice = {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
        assert_event(events[seq], stream, seq, notice)
    assert_event(events[4], stream, 4, {"jsonrpc": "2.0", "id": 5, "result": text_result("tok-1")})
    assert len(events) == 5


async def test_a_request_without_a_progress_token_is_answered_in_plain_json(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    body = rpc("tools/call", 6, name="test_tool_with_progress", arguments={})
    reply = await post(conformance_server, body, session_id)
    assert reply.head.headers == (JSON_TYPE, length(reply.body))
    assert reply.json() == {"jsonrpc": "2.0", "id": 6, "result": text_result("0")}


def elicitation_request(stream_message: str) -> dict[str, Any]:
    params = {"mode": "form", "message": stream_message, "requestedSchema": USER_RESPONSE_SCHEMA}
    return {"jsonrpc": "2.0", "id": "s-1", "method": "elicitation/create", "params": params}


async def start_elicitation(
    server: McpServer, wire: Wire, request_id: Any
) -> tuple[str, str, AsyncGenerator[Event, None]]:
    """A 2025-11-25 session that declared elicitation, and a test_elicitation call whose
    reply stream has delivered its priming event and the elicitation/create request."""
    session_id = await open_session(server, capabilities={"elicitation": {}})
    call = rpc("tools/call", request_id, name="test_elicitation", arguments={"message": "Name?"})
    events = wire.events(await sse_post(wire, session_id, call))
    stream = assert_priming(await anext(events))
    assert_event(await anext(events), stream, 1, elicitation_request("Name?"))
    return session_id, stream, events


async def test_answering_an_elicitation_delivers_the_tool_result_on_the_original_stream(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        session_id, stream, events = await start_elicitation(conformance_server, wire, 8)
        async with aclosing(events):
            answer = {"action": "accept", "content": {"response": "Ada"}}
            body = json.dumps({"jsonrpc": "2.0", "id": "s-1", "result": answer}).encode()
            accepted = await post(conformance_server, body, session_id)
            rest = [event async for event in events]
    assert (accepted.status, accepted.body) == (202, b"")
    text = 'User response: action=accept, content={"response":"Ada"}'
    assert len(rest) == 1
    assert_event(rest[0], stream, 2, {"jsonrpc": "2.0", "id": 8, "result": text_result(text)})


async def test_cancelling_a_running_request_stops_it_and_no_response_is_delivered(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        session_id, _, events = await start_elicitation(conformance_server, wire, 9)
        async with aclosing(events):
            cancel = notification("notifications/cancelled", requestId=9, reason="changed mind")
            accepted = await post(conformance_server, cancel, session_id)
            rest = [event async for event in events]
        late = {"jsonrpc": "2.0", "id": "s-1", "result": {"action": "accept", "content": {}}}
        late_answer = await post(conformance_server, json.dumps(late).encode(), session_id)
    assert (accepted.status, accepted.body) == (202, b"")
    assert rest == []
    assert (late_answer.status, late_answer.body) == (202, b"")


async def test_a_request_reusing_the_id_of_a_running_call_is_refused_and_the_call_stays_cancellable(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        session_id, _, events = await start_elicitation(conformance_server, wire, 9)
        async with aclosing(events):
            again = rpc("tools/call", 9, name="test_simple_text", arguments={})
            refused = await post(conformance_server, again, session_id)
            cancel = notification("notifications/cancelled", requestId=9)
            await post(conformance_server, cancel, session_id)
            rest = [event async for event in events]
    assert (refused.status, refused.json()) == (
        200,
        rpc_error(
            9,
            -32600,
            "Invalid Request: a request with this id is still running in this session; "
            "give each request an id of its own.",
        ),
    )
    assert rest == []


async def test_a_stream_cut_mid_call_is_resumed_with_last_event_id_and_delivers_the_rest(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    call = rpc("tools/call", 10, name="test_reconnection", arguments={})
    async with connect(conformance_server) as wire:
        head = await sse_post(wire, session_id, call)
        first = [event async for event in wire.events(head)]
    stream = assert_priming(first[0])
    before = {"level": "info", "data": "Before disconnect"}
    log = {"jsonrpc": "2.0", "method": "notifications/message", "params": before}
    assert_event(first[1], stream, 1, log)
    assert len(first) == 2
    headers = {
        "Accept": "text/event-stream",
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": LATEST,
        "Last-Event-ID": f"{stream}_1",
    }
    async with connect(conformance_server) as wire:
        await wire.request("GET", ENDPOINT, headers)
        head = await wire.head()
        rest = [event async for event in wire.events(head)]
    assert (head.status, head.headers) == (200, SSE_HEADERS)
    after = {"level": "info", "data": "After reconnect"}
    assert_event(
        rest[0], stream, 2, {"jsonrpc": "2.0", "method": "notifications/message", "params": after}
    )
    done = text_result("Reconnection test completed")
    assert_event(rest[1], stream, 3, {"jsonrpc": "2.0", "id": 10, "result": done})
    assert len(rest) == 2


async def test_a_last_event_id_of_no_known_stream_gets_404(conformance_server: McpServer) -> None:
    session_id = await open_session(conformance_server)
    headers = {
        "Accept": "text/event-stream",
        "Mcp-Session-Id": session_id,
        "Last-Event-ID": "0123456789abcdef_3",
    }
    reply = await exchange(conformance_server, "GET", headers)
    assert reply.status == 404
    assert reply.json() == rpc_error(
        None, -32600, "Not found: Last-Event-ID names no stream this session can resume."
    )


# --- the stateless era (2026-07-28) -----------------------------------------------------------


def modern_call(
    method: str, request_id: Any = 1, meta: dict[str, Any] | None = None, **params: Any
) -> bytes:
    return rpc(method, request_id, **params, _meta=meta if meta is not None else modern_meta())


async def modern_post(
    server: McpServer, body: bytes, method: str, name: str | None = None, version: str = MODERN
) -> Reply:
    return await exchange(server, "POST", modern_headers(method, name, version), body)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_get_and_delete_from_a_stateless_client_get_405(
    conformance_server: McpServer, method: str
) -> None:
    headers = {"Accept": "text/event-stream", "MCP-Protocol-Version": MODERN}
    reply = await exchange(conformance_server, method, headers)
    assert reply.status == 405
    assert reply.head.headers == (JSON_TYPE, ("allow", "POST"), length(reply.body))
    assert reply.json() == rpc_error(
        None, -32600, "Method not allowed: protocol 2026-07-28 uses POST only."
    )


async def test_a_stateless_request_without_mcp_method_gets_400_header_mismatch(
    conformance_server: McpServer,
) -> None:
    headers = modern_headers("tools/list")
    del headers["Mcp-Method"]
    reply = await exchange(conformance_server, "POST", headers, modern_call("tools/list"))
    assert reply.status == 400
    assert reply.json() == rpc_error(
        1, -32020, "Header mismatch: the Mcp-Method header is required."
    )


async def test_a_stateless_request_for_an_unknown_method_gets_404(
    conformance_server: McpServer,
) -> None:
    reply = await modern_post(conformance_server, modern_call("nope/nope", 2), "nope/nope")
    assert reply.status == 404
    assert reply.json() == rpc_error(2, -32601, "Method not found: 'nope/nope'.")


async def test_a_stateless_request_for_an_unsupported_version_gets_400_naming_the_supported(
    conformance_server: McpServer,
) -> None:
    body = modern_call("tools/list", 3, modern_meta(version="2099-01-01"))
    reply = await modern_post(conformance_server, body, "tools/list", version="2099-01-01")
    assert reply.status == 400
    assert reply.json() == rpc_error(
        3,
        -32022,
        "Unsupported protocol version: '2099-01-01'; use one of the supported versions.",
        {"supported": SUPPORTED, "requested": "2099-01-01"},
    )


async def test_a_stateless_request_without_client_capabilities_gets_400_invalid_params(
    conformance_server: McpServer,
) -> None:
    body = modern_call("tools/list", 4, {"io.modelcontextprotocol/protocolVersion": MODERN})
    reply = await modern_post(conformance_server, body, "tools/list")
    assert reply.status == 400
    assert reply.json() == rpc_error(
        4,
        -32602,
        "Invalid params: _meta must carry 'io.modelcontextprotocol/protocolVersion' and "
        "'io.modelcontextprotocol/clientCapabilities' (an object, {} for none).",
    )


async def test_a_stateless_tools_list_is_complete_cacheable_and_names_the_server(
    conformance_server: McpServer,
) -> None:
    reply = await modern_post(conformance_server, modern_call("tools/list", 5), "tools/list")
    body = reply.json()
    result = body["result"]
    assert reply.status == 200
    assert reply.head.headers == (JSON_TYPE, length(reply.body))
    assert (body["jsonrpc"], body["id"]) == ("2.0", 5)
    assert {key: value for key, value in result.items() if key != "tools"} == {
        "resultType": "complete",
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": {SERVER_INFO: SERVER},
    }
    assert [tool["name"] for tool in result["tools"][:2]] == [
        "test_simple_text",
        "test_image_content",
    ]
    assert "mcp-session-id" not in reply.head.names


def tamper(token: str) -> str:
    """Flip one bit of the signed payload, keeping valid base64 and the MAC as it was."""
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


async def test_an_input_required_round_trip_completes_and_a_tampered_request_state_gets_400(
    conformance_server: McpServer,
) -> None:
    name = "test_input_required_result_elicitation"
    meta = modern_meta({"elicitation": {}})
    first = await modern_post(
        conformance_server,
        modern_call("tools/call", 1, meta, name=name, arguments={}),
        "tools/call",
        name,
    )
    round_one = first.json()["result"]
    state = round_one["requestState"]
    answers = {"user_name": {"action": "accept", "content": {"name": "Ada"}}}

    async def retry(request_id: int, request_state: str) -> Reply:
        body = modern_call(
            "tools/call",
            request_id,
            meta,
            name=name,
            arguments={},
            inputResponses=answers,
            requestState=request_state,
        )
        return await modern_post(conformance_server, body, "tools/call", name)

    done = await retry(2, state)
    tampered = await retry(3, tamper(state))
    asked = {
        "method": "elicitation/create",
        "params": {"mode": "form", "message": "What is your name?", "requestedSchema": NAME_SCHEMA},
    }
    assert first.status == 200
    assert round_one == {
        "resultType": "input_required",
        "inputRequests": {"user_name": asked},
        "requestState": state,
        "_meta": {SERVER_INFO: SERVER},
    }
    assert (done.status, done.json()) == (
        200,
        {
            "jsonrpc": "2.0",
            "id": 2,
            "result": text_result(
                "Hello, Ada!", resultType="complete", _meta={SERVER_INFO: SERVER}
            ),
        },
    )
    assert (tampered.status, tampered.json()) == (400, rpc_error(3, -32602, BAD_STATE))


async def test_closing_the_connection_mid_request_cancels_a_stateless_handler() -> None:
    gate = Gate()
    async with running(catalogue=gate.catalogue()) as server:
        async with connect(server) as wire:
            call = modern_call("tools/call", 1, name="gate", arguments={})
            await wire.request("POST", ENDPOINT, modern_headers("tools/call", "gate"), call)
            await bounded(gate.entered)
        await bounded(gate.cancelled)
    assert not gate.release.is_set()


async def test_listen_acknowledges_first_and_then_delivers_tool_list_changes(
    conformance_server: McpServer,
) -> None:
    listen = modern_call(
        "subscriptions/listen", "listen-1", notifications={"toolsListChanged": True}
    )
    trigger = modern_call("tools/call", 2, name="test_trigger_tool_change", arguments={})
    async with connect(conformance_server) as wire:
        await wire.request("POST", ENDPOINT, modern_headers("subscriptions/listen"), listen)
        head = await wire.head()
        async with aclosing(wire.events(head)) as events:
            acknowledged = await anext(events)
            triggered = await modern_post(
                conformance_server, trigger, "tools/call", "test_trigger_tool_change"
            )
            changed = await anext(events)
    assert (head.status, head.headers) == (200, SSE_HEADERS)
    subscription = {SUBSCRIPTION_ID: "listen-1"}
    assert acknowledged.raw == message(
        {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": {"toolsListChanged": True}, "_meta": subscription},
        }
    )
    assert triggered.status == 200
    assert changed.raw == message(
        {
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
            "params": {"_meta": subscription},
        }
    )
