"""Property: whatever bytes a client sends, however they are split, the server answers with
well-formed HTTP/1.1 responses or closes the connection; it never hangs and never crashes.

One server per test function serves every example (the anyio pytest plugin runs Hypothesis
examples on the fixture's event loop).  After its bytes, each example half-closes the socket,
so that a server waiting for more is told there is none, and reads until the server closes;
then a normal initialize on a new connection must still be answered.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import suppress

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sp00ky_mcp.engine.config import Limits
from sp00ky_mcp.engine.server import McpServer
from tests.wire import (
    BOTH,
    ENDPOINT,
    MODERN,
    Reply,
    chunked,
    connect,
    encode_request,
    initialize_body,
    initialize_reply,
    modern_meta,
    post_headers,
    rpc,
    running,
)

pytestmark = pytest.mark.anyio

# Timeouts far above the per-example bound: a server that ignores the client's end of input
# and waits for a timeout instead fails the example rather than passing slowly.
LIMITS = Limits(max_body_bytes=256, max_header_bytes=512, header_timeout=30.0)
EXAMPLE_BOUND = 5.0
SETTINGS = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    # The server fixture is shared by every example on purpose: that is the point of the test.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STATUSES = {100, 200, 202, 400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 417, 421, 431, 501}
_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@pytest.fixture
async def fuzz_server() -> AsyncIterator[McpServer]:
    async with running(LIMITS) as server:
        yield server


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


async def send_in_pieces(server: McpServer, data: bytes, cuts: list[int]) -> list[Reply]:
    """Each piece in its own write, with the event loop turned between writes so that the
    server reads them apart; then end of input, then every response until the server closes."""
    async with connect(server) as wire:
        for piece in pieces(data, cuts):
            try:
                await wire.send(piece)
            except _GONE:
                break  # the server already answered and closed
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
        with suppress(*_GONE):
            await wire.send_eof()
        return await wire.until_closed()


async def check(server: McpServer, data: bytes, cuts: list[int]) -> None:
    with anyio.fail_after(EXAMPLE_BOUND):
        replies = await send_in_pieces(server, data, cuts)
        for reply in replies:
            assert reply.status in STATUSES, reply
        # Seen with --hypothesis-show-statistics: which answers the inputs reached.
        event("statuses", " ".join(str(reply.status) for reply in replies) or "closed")
        await assert_alive(server)


async def assert_alive(server: McpServer) -> None:
    async with connect(server) as wire:
        await wire.request("POST", ENDPOINT, post_headers(), initialize_body())
        reply = await wire.final()
    assert (reply.status, reply.json()) == (200, initialize_reply())


# --- request-shaped inputs ---------------------------------------------------------------------

HOSTS = ["127.0.0.1", "localhost:1", "[::1]", "evil.example", "", "a b"]
HEADER_VALUES = {
    "Content-Length": ["0", "5", "64", "300", "-1", "abc", "1, 2", "00", "99999999999999999999"],
    "Transfer-Encoding": ["chunked", "gzip", "chunked, chunked", "identity", "CHUNKED"],
    "Expect": ["100-continue", "nothing"],
    "Accept": [BOTH, "application/json", "text/event-stream", "*/*", "", "text/event-stream;q=0"],
    "Content-Type": ["application/json", "text/plain", "", "application/json; charset=utf-8"],
    "Mcp-Session-Id": ["x", "", "0" * 40],
    "MCP-Protocol-Version": [MODERN, "2025-11-25", "2025-03-26", "bogus", ""],
    "Mcp-Method": ["tools/list", "initialize", "tools/call", ""],
    "Mcp-Name": ["test_simple_text", "=?base64?!!?="],
    "Connection": ["close", "keep-alive", "upgrade"],
    "Upgrade": ["websocket", "h2c"],
    "Origin": ["http://evil.example", "http://localhost", "null"],
    "Last-Event-ID": ["abc_1", "_", "x"],
}
BODIES = [
    b"",
    initialize_body(),
    initialize_body("2025-03-26"),
    rpc("tools/list", 1, _meta=modern_meta()),
    rpc("tools/call", "a", name="test_simple_text", arguments={}, _meta=modern_meta()),
    rpc("ping", True),
    json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]).encode(),
    b"[]",
    b"{",
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}',
    b"\xff\xfe\x00",
]


@st.composite
def header_fields(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from([*HEADER_VALUES, "X-Random"]))
    if name == "X-Random":
        return name, draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20))
    return name, draw(st.sampled_from(HEADER_VALUES[name]))


# Requests the server accepts, as (header fields beyond Accept and Content-Type, body).
VALID = [
    ((), initialize_body()),
    ((), initialize_body("2025-03-26")),
    (
        (("MCP-Protocol-Version", MODERN), ("Mcp-Method", "tools/list")),
        rpc("tools/list", 1, _meta=modern_meta()),
    ),
    (
        (
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "test_simple_text"),
        ),
        rpc("tools/call", "a", name="test_simple_text", arguments={}, _meta=modern_meta()),
    ),
]


@st.composite
def valid_request(draw: st.DrawFn) -> tuple[str, str, str, list[tuple[str, str]], bytes, str]:
    fields, body = draw(st.sampled_from(VALID))
    accept = draw(st.sampled_from([BOTH, "text/event-stream, application/json"]))
    standard = [("Accept", accept), ("Content-Type", "application/json"), *fields]
    return "POST", ENDPOINT, "HTTP/1.1", standard, body, "127.0.0.1"


@st.composite
def odd_request(draw: st.DrawFn) -> tuple[str, str, str, list[tuple[str, str]], bytes, str]:
    method = draw(st.sampled_from(["POST", "GET", "DELETE", "PUT", "OPTIONS", "CONNECT", "post"]))
    target = draw(st.sampled_from([ENDPOINT, "/", f"{ENDPOINT}?x=1", "*", "/v1/%6Dcp", "//x"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "http/1.1"]))
    return method, target, version, [], draw(st.sampled_from(BODIES)), draw(st.sampled_from(HOSTS))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One request: either one the server accepts or an odd request line, then a few header
    fields that may spoil it, then a body, usually framed so that it is read as one."""
    method, target, version, fields, body, host = draw(st.one_of(valid_request(), odd_request()))
    fields = [*fields, *draw(st.lists(header_fields(), max_size=3))]
    framing = draw(st.sampled_from(["length", "chunked", "as-drawn"]))
    if framing == "length":
        fields.append(("Content-Length", str(len(body))))
    elif framing == "chunked":
        fields.append(("Transfer-Encoding", "chunked"))
        body = chunked(body[:7], body[7:])
    head = encode_request(method, target, fields, None, host)
    return head.replace(b" HTTP/1.1\r\n", f" {version}\r\n".encode(), 1) + body


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """A few single-byte replacements, insertions or deletions."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(buffer)))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from(b"\x00\r\n :;,\t\x7f\xffaZ0"))
        if op == "insert":
            buffer.insert(at, byte)
        elif at < len(buffer):
            if op == "replace":
                buffer[at] = byte
            else:
                del buffer[at]
    return bytes(buffer)


@st.composite
def request_shaped(draw: st.DrawFn) -> bytes:
    """One to three pipelined requests, sometimes mutated."""
    data = b"".join(draw(st.lists(requests(), min_size=1, max_size=3)))
    return draw(mutated(data)) if draw(st.booleans()) else data


def split(payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple[bytes, list[int]]]:
    """A payload and the offsets to cut it at.  Drawn before the example runs: a draw inside
    the async test could raise Hypothesis's StopTest (a BaseException) through the anyio
    runner task and end it for every later example."""
    return payloads.flatmap(
        lambda data: st.tuples(st.just(data), st.lists(st.integers(0, len(data)), max_size=6))
    )


# --- the properties --------------------------------------------------------------------------


@SETTINGS
@given(case=split(st.binary(max_size=600)))
async def test_any_bytes_in_any_pieces_get_well_formed_responses_or_a_close(
    fuzz_server: McpServer, case: tuple[bytes, list[int]]
) -> None:
    await check(fuzz_server, *case)


@SETTINGS
@given(case=split(request_shaped()))
async def test_request_shaped_bytes_in_any_pieces_get_well_formed_responses_or_a_close(
    fuzz_server: McpServer, case: tuple[bytes, list[int]]
) -> None:
    await check(fuzz_server, *case)


async def test_garbage_after_a_valid_request_gets_the_answer_then_400(
    fuzz_server: McpServer,
) -> None:
    """The example the properties rest on, spelled out: a good request, then bytes that are
    not HTTP, on one connection."""
    good = encode_request("POST", ENDPOINT, post_headers(), initialize_body())
    async with connect(fuzz_server) as wire:
        await wire.send(good + b"\x16\x03\x01 not http\r\n\r\n")
        await wire.send_eof()
        with anyio.fail_after(EXAMPLE_BOUND):
            replies = await wire.until_closed()
    assert [reply.status for reply in replies] == [200, 400]
    assert replies[0].json() == initialize_reply()
    assert replies[1].body == b"The request is not valid HTTP/1.1.\n"
