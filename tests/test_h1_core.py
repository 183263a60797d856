"""The sans-IO HTTP/1.1 core, driven with plain bytes and no socket: what it hands on for what
a client sends, and that the responses it writes without h11 are byte for byte what h11 writes.

An h11 client connection plays the peer (h11's own `ConnectionPair` idea), so both directions
are checked against an independent reading of RFC 9112."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sp00ky_mcp.engine.config import Limits
from sp00ky_mcp.engine.h1 import (
    H1Core,
    HttpRequest,
    HttpResponse,
    Interim,
    Rejection,
    split_absolute,
)

from .test_purity import TREE

SETTINGS = settings(max_examples=200, derandomize=True, database=None, deadline=None)
GET = b"GET /v1/mcp HTTP/1.1\r\nHost: example\r\n\r\n"
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Fields whose presence changes the framing, so the core leaves them to h11, and the one it
# answers itself.
FRAMING = {b"connection", b"content-length", b"transfer-encoding", b"expect"}

names = st.text(TOKEN_CHARS, min_size=1, max_size=20).map(str.encode)
visible = st.binary(min_size=1, max_size=12).filter(
    lambda b: all(0x21 <= c <= 0x7E or c >= 0x80 for c in b)
)
values = st.lists(visible, max_size=3).map(b" ".join)
fields = st.lists(st.tuples(names, values), max_size=8).filter(
    lambda hs: all(name.lower() not in FRAMING for name, _ in hs)
)
statuses = st.integers(200, 599).filter(lambda s: s not in (204, 304))


def served(data: bytes = GET, limits: Limits | None = None) -> tuple[H1Core, list[object]]:
    core = H1Core(limits or Limits())
    return core, list(core.receive(data))


def h11_server_after(data: bytes) -> h11.Connection:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    while server.next_event() not in (h11.NEED_DATA, h11.PAUSED):
        pass
    return server


def client_reads(data: bytes) -> list[object]:
    """What an h11 client makes of response bytes, to a GET it sent."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/v1/mcp", headers=[("Host", "example")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    events: list[object] = []
    while (event := client.next_event()) is not h11.NEED_DATA:
        events.append(event)
        if isinstance(event, h11.EndOfMessage):
            break
    return events


# --- the fast path writes exactly what h11 would ----------------------------------------------


@SETTINGS
@given(status=statuses, headers=fields, body=st.binary(max_size=64))
def test_a_whole_response_written_without_h11_is_the_bytes_h11_writes(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    core, _ = served()
    ours = core.whole(HttpResponse(status, headers, body))
    assert core.answered_directly
    server = h11_server_after(GET)
    length = [(b"content-length", str(len(body)).encode())]
    theirs = server.send(h11.Response(status_code=status, headers=[*headers, *length]))
    theirs = (theirs or b"") + (server.send(h11.Data(data=body)) or b"" if body else b"")
    theirs += server.send(h11.EndOfMessage()) or b""
    assert ours == theirs


@SETTINGS
@given(status=statuses, headers=fields, chunks=st.lists(st.binary(max_size=40), max_size=5))
def test_a_streamed_response_written_without_h11_is_the_bytes_h11_writes(
    status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> None:
    core, _ = served()
    ours = core.begin_body(status, headers)
    assert core.chunking
    ours += b"".join(core.body_chunk(chunk) or b"" for chunk in chunks)
    ours += core.end_body()
    server = h11_server_after(GET)
    theirs = server.send(h11.Response(status_code=status, headers=headers)) or b""
    theirs += b"".join(server.send(h11.Data(data=chunk)) or b"" for chunk in chunks if chunk)
    theirs += server.send(h11.EndOfMessage()) or b""
    assert ours == theirs


def test_an_h11_client_reads_the_fast_path_response_whole() -> None:
    core, _ = served()
    data = core.whole(HttpResponse(200, [(b"content-type", b"application/json")], b"{}"))
    events = client_reads(data)
    assert [type(e) for e in events] == [h11.Response, h11.Data, h11.EndOfMessage]
    assert isinstance(events[1], h11.Data) and events[1].data == b"{}"


# --- what the core hands on for what a client sends ------------------------------------------


@SETTINGS
@given(cuts=st.lists(st.integers(0, 200), max_size=6))
def test_a_request_in_any_pieces_is_handed_on_once_and_whole(cuts: list[int]) -> None:
    raw = b"POST /v1/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
    core = H1Core(Limits())
    items: list[object] = []
    start = 0
    for cut in [*sorted({min(c, len(raw)) for c in cuts}), len(raw)]:
        items += core.receive(raw[start:cut])
        start = cut
    [request] = items
    assert isinstance(request, HttpRequest)
    assert (request.method, request.path, request.body) == ("POST", "/v1/mcp", b"hello world")


def test_a_pipelined_request_is_handed_on_only_after_the_response_before_it() -> None:
    core, items = served(GET + GET.replace(b"/v1/mcp", b"/second"))
    assert [item.path for item in items if isinstance(item, HttpRequest)] == ["/v1/mcp"]
    core.whole(HttpResponse(200, [], b""))
    [second] = core.next_cycle() or []
    assert isinstance(second, HttpRequest) and second.path == "/second"


def test_a_declared_body_over_the_limit_is_refused_with_413_before_any_byte_of_it() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n"
    _, items = served(head, Limits(max_body_bytes=64))
    assert items == [
        Rejection(413, "The request body is larger than the server accepts."),
    ]


def test_a_chunked_body_is_refused_with_413_as_soon_as_it_grows_past_the_limit() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    core, items = served(head, Limits(max_body_bytes=8))
    assert items == []
    assert core.receive(b"9\r\n123456789\r\n") == [
        Rejection(413, "The request body is larger than the server accepts."),
    ]
    assert core.refusing and core.receive(GET) == []


def test_a_header_block_over_the_limit_is_refused_with_431() -> None:
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300 + b"\r\n\r\n"
    _, items = served(big, Limits(max_header_bytes=256))
    assert items == [
        Rejection(431, "The request header fields are larger than the server accepts."),
    ]


@pytest.mark.parametrize(
    "raw",
    [
        b"\n",
        b"GARBAGE\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["a stray newline", "a garbage request line", "a bad chunk size"],
)
def test_bytes_that_are_not_http_are_refused_with_400(raw: bytes) -> None:
    _, items = served(raw)
    assert items == [Rejection(400, "The request is not valid HTTP/1.1.")]


def test_a_refusal_is_written_with_connection_close_and_its_length() -> None:
    core, [rejection] = served(b"\n")
    assert isinstance(rejection, Rejection)
    assert core.rejection(rejection) == (
        b"HTTP/1.1 400 \r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        b"content-length: 35\r\n\r\nThe request is not valid HTTP/1.1.\n"
    )
    assert core.client_may_be_sending()


def test_bytes_after_a_request_that_asked_to_close_are_never_handed_on() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET
    core, items = served(raw)
    assert len([item for item in items if isinstance(item, HttpRequest)]) == 1
    core.whole(HttpResponse(200, [], b"ok"))
    assert core.next_cycle() is None


def test_expect_100_continue_is_answered_at_once_as_an_interim_response() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    _, items = served(head)
    assert items == [Interim(b"HTTP/1.1 100 \r\n\r\n")]


@pytest.mark.parametrize("expectation", [b"200-ok", b"100-continue, 200-ok"])
def test_an_expectation_other_than_100_continue_is_refused_with_417(expectation: bytes) -> None:
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: " + expectation + b"\r\nContent-Length: 2\r\n\r\n"
    )
    _, items = served(head)
    assert items == [
        Rejection(
            417,
            "The server meets no expectation but 100-continue; send the request without that "
            "Expect field.",
        )
    ]


def test_the_client_closing_between_requests_is_handed_on_as_the_end() -> None:
    core, _ = served(b"")
    assert core.receive_eof() == [None]


def test_the_core_does_no_io_and_keeps_no_clock() -> None:
    assert (
        TREE.forbidden_chains("sp00ky_mcp.engine.h1", frozenset({"anyio", "asyncio", "socket"}))
        == []
    )


@pytest.mark.parametrize(
    ("target", "split"),
    [
        ("http://host:8765/v1/mcp?x=1", ("host:8765", "/v1/mcp?x=1")),
        ("https://user:pw@host/v1/mcp", ("host", "/v1/mcp")),
        ("http://host?x=1", ("host", "/?x=1")),
        ("http://host", ("host", "/")),
        ("http://[::1]:8765/", ("[::1]:8765", "/")),
    ],
)
def test_an_absolute_form_target_splits_into_its_host_and_its_origin_form(
    target: str, split: tuple[str, str]
) -> None:
    assert split_absolute(target) == split
