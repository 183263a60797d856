"""The HTTP/1.1 layer on the wire: connection reuse, pipelining, framing, limits, timeouts and
graceful shutdown, asserted on raw bytes from a plain socket."""

from __future__ import annotations

from contextlib import suppress

import anyio
import anyio.abc
import pytest

from sp00ky_mcp.engine.config import Limits, ServerConfig
from sp00ky_mcp.engine.http import HttpRequest, HttpResponse, HttpServer
from sp00ky_mcp.engine.server import McpServer, allow_anonymous
from tests.wire import (
    ENDPOINT,
    LATEST,
    SERVER,
    SERVER_INFO,
    Gate,
    bounded,
    chunked,
    connect,
    encode_request,
    initialize_body,
    initialize_reply,
    modern_headers,
    modern_meta,
    post_headers,
    rpc,
    rpc_error,
    running,
)

pytestmark = pytest.mark.anyio

PLAIN = ("content-type", "text/plain; charset=utf-8")
CLOSE = ("connection", "close")
NOT_FOUND = b"Not found: the MCP endpoint is /v1/mcp.\n"
NOT_HTTP = b"The request is not valid HTTP/1.1.\n"
TOO_LARGE_BODY = b"The request body is larger than the server accepts.\n"
TOO_LARGE_HEAD = b"The request header fields are larger than the server accepts.\n"
PARSE_ERROR = rpc_error(None, -32700, "Parse error: the request body is not valid JSON.")


def length(body: bytes) -> tuple[str, str]:
    return ("content-length", str(len(body)))


# --- connection reuse and ordering -----------------------------------------------------------


async def test_two_requests_on_one_connection_are_both_answered_and_it_stays_open(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        await wire.request("POST", ENDPOINT, post_headers(), initialize_body())
        first = await wire.final()
        session_id = first.head.get("mcp-session-id")
        assert session_id is not None
        await wire.request("POST", ENDPOINT, post_headers(session_id, LATEST), rpc("ping", 7))
        second = await wire.final()
    assert (first.status, first.json()) == (200, initialize_reply())
    assert "connection" not in first.head.names
    assert (second.status, second.json()) == (200, {"jsonrpc": "2.0", "id": 7, "result": {}})
    assert "connection" not in second.head.names


async def test_pipelined_requests_are_answered_in_the_order_they_were_sent(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        await wire.send(
            encode_request("POST", ENDPOINT, post_headers(), initialize_body(), wire.host)
            + encode_request("POST", ENDPOINT, post_headers(), b"{not json", wire.host)
            + encode_request("GET", "/elsewhere", (), None, wire.host)
        )
        replies = [await wire.final() for _ in range(3)]
    assert [reply.status for reply in replies] == [200, 400, 404]
    assert replies[0].json() == initialize_reply()
    assert replies[1].json() == PARSE_ERROR
    assert replies[2].body == NOT_FOUND


async def test_a_client_that_asks_to_close_gets_connection_close_and_the_connection_ends(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        await wire.request("POST", "/elsewhere", {**post_headers(), "Connection": "close"}, b"{}")
        reply = await wire.final()
        assert await wire.closed()
    assert reply.status == 404
    assert reply.head.headers == (PLAIN, length(NOT_FOUND), CLOSE)


async def test_an_http_1_0_request_is_answered_and_the_connection_ends(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        raw = encode_request("POST", "/elsewhere", post_headers(), b"{}", wire.host)
        await wire.send(raw.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1))
        reply = await wire.final()
        assert await wire.closed()
    assert reply.status == 404
    assert reply.head.headers == (PLAIN, length(NOT_FOUND), CLOSE)


async def test_a_response_header_that_is_not_valid_http_becomes_a_500_and_is_never_written() -> (
    None
):
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [(b"x-echo", b"a\r\nset-cookie: b")], b"{}")

    http = HttpServer(handler, Limits())
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(http.serve, "127.0.0.1", 0)
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(encode_request("POST", ENDPOINT, (), b"{}"))
            received = b""
            with anyio.fail_after(5):
                while not received.endswith(b"Internal server error.\n"):
                    received += await stream.receive()
        http.shutdown()
    assert received.startswith(b"HTTP/1.1 500 ")
    assert b"set-cookie" not in received


async def test_a_request_whose_head_arrives_in_pieces_is_answered_on_a_kept_connection(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        raw = encode_request("POST", ENDPOINT, post_headers(), initialize_body(), wire.host)
        for start in range(0, len(raw), 7):
            await wire.send(raw[start : start + 7])
        first = await wire.final()
        await wire.request("GET", "/elsewhere")
        second = await wire.final()
    assert (first.status, first.json()) == (200, initialize_reply())
    assert (second.status, second.body) == (404, NOT_FOUND)


# --- request framing --------------------------------------------------------------------------


async def test_a_chunked_request_body_is_reassembled_before_it_is_read(
    conformance_server: McpServer,
) -> None:
    body = initialize_body()
    framed = chunked(body[:10], body[10:11], body[11:])
    async with connect(conformance_server) as wire:
        await wire.request(
            "POST", ENDPOINT, {**post_headers(), "Transfer-Encoding": "chunked"}, framed
        )
        reply = await wire.final()
    assert (reply.status, reply.json()) == (200, initialize_reply())


async def test_expect_100_continue_gets_an_interim_100_before_the_final_response(
    conformance_server: McpServer,
) -> None:
    body = initialize_body()
    headers = {**post_headers(), "Expect": "100-continue", "Content-Length": str(len(body))}
    async with connect(conformance_server) as wire:
        await wire.request("POST", ENDPOINT, headers)
        interim = await wire.reply()
        await wire.send(body)
        final = await wire.reply()
    assert (interim.status, interim.head.headers, interim.body) == (100, (), b"")
    assert (final.status, final.json()) == (200, initialize_reply())


async def test_a_head_request_gets_the_header_fields_without_content_and_keeps_the_connection(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        await wire.request("HEAD", ENDPOINT)
        head = await wire.reply(head_request=True)
        await wire.request("GET", "/elsewhere")
        after = await wire.final()
    allowed = b"Method not allowed: use POST, GET or DELETE.\n"
    assert head.status == 405
    assert head.head.headers == (PLAIN, ("allow", "GET, POST, DELETE"), length(allowed))
    assert (after.status, after.body) == (404, NOT_FOUND)


# --- limits -----------------------------------------------------------------------------------


async def test_a_content_length_over_the_body_limit_gets_413_and_the_connection_closes() -> None:
    async with running(Limits(max_body_bytes=64)) as server, connect(server) as wire:
        await wire.request("POST", ENDPOINT, {**post_headers(), "Content-Length": "65"})
        reply = await wire.final()
        assert await wire.closed()
    assert reply.status == 413
    assert reply.head.headers == (PLAIN, CLOSE, length(TOO_LARGE_BODY))
    assert reply.body == TOO_LARGE_BODY


async def test_a_declared_body_over_the_limit_is_refused_before_any_100_continue() -> None:
    headers = {**post_headers(), "Expect": "100-continue", "Content-Length": "65"}
    async with running(Limits(max_body_bytes=64)) as server, connect(server) as wire:
        await wire.request("POST", ENDPOINT, headers)
        reply = await wire.reply()
        assert await wire.closed()
    assert (reply.status, reply.body) == (413, TOO_LARGE_BODY)


async def test_a_chunked_body_that_grows_over_the_limit_gets_413_and_the_connection_closes() -> (
    None
):
    headers = {**post_headers(), "Transfer-Encoding": "chunked"}
    async with running(Limits(max_body_bytes=64)) as server, connect(server) as wire:
        await wire.request("POST", ENDPOINT, headers, chunked(b"x" * 40, b"y" * 40))
        reply = await wire.final()
        assert await wire.closed()
    assert reply.status == 413
    assert reply.head.headers == (PLAIN, CLOSE, length(TOO_LARGE_BODY))


@pytest.mark.parametrize("delivery", ["in-one-write", "dribbled"])
async def test_a_header_block_over_the_limit_gets_431_and_the_connection_closes(
    delivery: str,
) -> None:
    request = encode_request("GET", ENDPOINT, {"X-Padding": "p" * 1500})
    async with running(Limits(max_header_bytes=1024)) as server, connect(server) as wire:
        if delivery == "in-one-write":
            await wire.send(request)
        else:
            # Still incomplete when it passes the limit: no blank line has arrived yet.
            await wire.send(request[:1200])
        reply = await wire.final()
        assert await wire.closed()
    assert reply.status == 431
    assert reply.head.headers == (PLAIN, CLOSE, length(TOO_LARGE_HEAD))
    assert reply.body == TOO_LARGE_HEAD


async def test_a_header_block_just_under_the_limit_is_served() -> None:
    async with running(Limits(max_header_bytes=1024)) as server, connect(server) as wire:
        padding = 1024 - len(
            encode_request("GET", "/elsewhere", {"X-Padding": ""}, None, wire.host)
        )
        await wire.request("GET", "/elsewhere", {"X-Padding": "p" * padding})
        reply = await wire.final()
    assert (reply.status, reply.body) == (404, NOT_FOUND)


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x01\x02 nonsense\r\n\r\n", b"GET\r\n\r\n", b"NOT A REQUEST LINE\r\n\r\n"],
)
async def test_a_garbage_request_line_gets_400_and_the_connection_closes(
    conformance_server: McpServer, garbage: bytes
) -> None:
    async with connect(conformance_server) as wire:
        await wire.send(garbage)
        reply = await wire.final()
        assert await wire.closed()
    assert reply.status == 400
    assert reply.head.headers == (PLAIN, CLOSE, length(NOT_HTTP))
    assert reply.body == NOT_HTTP


async def test_a_client_still_sending_after_its_request_was_refused_can_read_the_refusal(
    conformance_server: McpServer,
) -> None:
    """RFC 9112 section 9.6: a server that closes outright while the client is still sending
    makes its TCP stack answer with a reset, which erases the response the client has not read
    yet.  The client here reads only after the server has dealt with its first bytes and it
    has sent more."""
    async with connect(conformance_server) as wire:
        await wire.send(b"GET /v1/mcp http/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await anyio.wait_all_tasks_blocked()  # the server has answered and moved on
        for _ in range(2):
            with suppress(anyio.BrokenResourceError):
                await wire.send(b"more of a request the client is still writing\r\n")
            await anyio.wait_all_tasks_blocked()
        reply = await wire.final()
        assert await wire.closed()
    assert (reply.status, reply.body) == (400, NOT_HTTP)


async def test_a_client_that_stalls_inside_its_headers_gets_408_after_the_header_timeout() -> None:
    half = encode_request("POST", ENDPOINT, post_headers())[:40]
    async with running(Limits(header_timeout=0.2)) as server, connect(server) as wire:
        await wire.send(half)
        reply = await wire.final()
        assert await wire.closed()
    body = b"Timed out reading the request headers.\n"
    assert reply.status == 408
    assert reply.head.headers == (PLAIN, CLOSE, length(body))
    assert reply.body == body


async def test_a_client_that_stalls_inside_its_body_gets_408_after_the_body_timeout() -> None:
    headers = {**post_headers(), "Content-Length": "100"}
    async with running(Limits(body_timeout=0.2)) as server, connect(server) as wire:
        await wire.request("POST", ENDPOINT, headers, b'{"jsonrpc":')
        reply = await wire.final()
        assert await wire.closed()
    assert (reply.status, reply.body) == (408, b"Timed out reading the request body.\n")


async def test_an_idle_keep_alive_connection_is_closed_quietly_after_the_idle_timeout() -> None:
    async with running(Limits(idle_timeout=0.2)) as server, connect(server) as wire:
        await wire.request("GET", "/elsewhere")
        reply = await wire.final()
        assert await wire.closed()
    assert reply.status == 404


async def test_a_connection_over_the_connection_limit_gets_503_and_is_closed() -> None:
    async with running(Limits(max_connections=1)) as server, connect(server) as first:
        await first.request("GET", "/elsewhere")
        assert (await first.final()).status == 404
        async with connect(server) as second:
            refused = await second.final()
            assert await second.closed()
    body = b"The server has too many open connections; retry shortly.\n"
    assert (refused.status, refused.head.reason) == (503, "Service Unavailable")
    assert refused.head.headers == (PLAIN, ("retry-after", "1"), CLOSE, length(body))
    assert refused.body == body


# --- routing ----------------------------------------------------------------------------------


async def test_an_unknown_path_gets_404_in_plain_text_and_the_connection_stays_open(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        await wire.request("POST", "/v1/mcp/extra", post_headers(), initialize_body())
        missing = await wire.final()
        await wire.request("POST", ENDPOINT, post_headers(), initialize_body())
        found = await wire.final()
    assert missing.status == 404
    assert missing.head.headers == (PLAIN, length(NOT_FOUND))
    assert missing.body == NOT_FOUND
    assert found.status == 200


async def test_a_method_other_than_get_post_or_delete_gets_405_with_allow(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server) as wire:
        await wire.request("PUT", ENDPOINT, post_headers(), b"{}")
        reply = await wire.final()
    body = b"Method not allowed: use POST, GET or DELETE.\n"
    assert reply.status == 405
    assert reply.head.headers == (PLAIN, ("allow", "GET, POST, DELETE"), length(body))
    assert reply.body == body


# --- graceful shutdown ------------------------------------------------------------------------


async def test_shutdown_lets_a_request_in_flight_finish_and_then_the_server_returns() -> None:
    gate = Gate()
    server = McpServer(ServerConfig(port=0), gate.catalogue(), authenticate=allow_anonymous)
    stopped = anyio.Event()

    async def serve(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        await server.serve(task_status=task_status)
        stopped.set()

    call = rpc("tools/call", 1, name="gate", arguments={}, _meta=modern_meta())
    async with anyio.create_task_group() as tasks:
        await tasks.start(serve)
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, modern_headers("tools/call", "gate"), call)
            await bounded(gate.entered)
            server.shutdown()
            await anyio.wait_all_tasks_blocked()
            assert not stopped.is_set()
            gate.release.set()
            reply = await wire.final()
            assert await wire.closed()
        await bounded(stopped)
    result = {
        "content": [{"type": "text", "text": "released"}],
        "isError": False,
        "resultType": "complete",
        "_meta": {SERVER_INFO: SERVER},
    }
    assert reply.status == 200
    assert reply.head.get("connection") == "close"
    assert reply.json() == {"jsonrpc": "2.0", "id": 1, "result": result}
    assert not gate.cancelled.is_set()


async def test_shutdown_closes_an_idle_keep_alive_connection_at_once() -> None:
    async with running() as server, connect(server) as wire:
        await wire.request("GET", "/elsewhere")
        assert (await wire.final()).status == 404
        server.shutdown()
        assert await wire.closed()


async def test_a_204_response_is_framed_by_h11_and_the_connection_stays_usable() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(204 if request.path == "/empty" else 200, [], b"")

    http = HttpServer(handler, Limits())
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(http.serve, "127.0.0.1", 0)
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(encode_request("GET", "/empty") + encode_request("GET", "/next"))
            received = b""
            with anyio.fail_after(5):
                while received.count(b"HTTP/1.1") < 2 or not received.endswith(b"\r\n\r\n"):
                    received += await stream.receive()
        http.shutdown()
    first, second = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"204 ")
    assert b"content-length" not in first.lower()
    assert second.startswith(b"200 ")
