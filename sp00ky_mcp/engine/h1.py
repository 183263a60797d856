"""HTTP/1.1 for one connection, sans-IO: bytes in, requests and refusals out; responses in,
bytes out.  Knows nothing of MCP, sockets, tasks or clocks.

`H1Core` owns the h11 parser, the bounds on what a client may send (header block, body,
pipelined read-ahead) and the framing of responses, including the fast path that writes the
common response without h11.  The asyncio protocol in `http.py` feeds it what the socket reads,
writes what it returns and keeps the deadlines; tests drive it with plain bytes (the shape is
h11's own and hypercorn's `protocol/h11.py`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

import h11

from .config import Limits

Header = tuple[bytes, bytes]
NOT_HTTP = "The request is not valid HTTP/1.1."
BODY_TOO_LARGE = "The request body is larger than the server accepts."
HEADERS_TOO_LARGE = "The request header fields are larger than the server accepts."
EXPECTATION = (
    "The server meets no expectation but 100-continue; send the request without that Expect field."
)
# Reasons for the statuses h11 hints at; anything else is plain malformed HTTP.
H11_REASONS = {431: HEADERS_TOO_LARGE}


class ResponseChannel(Protocol):
    """Lets an application answer incrementally while it is still working on the request:
    start a response, send body chunks (chunked encoding), end it.  An application that used
    it returns `STREAMED`."""

    @property
    def started(self) -> bool: ...

    def start(self, status: int, headers: list[Header]) -> None: ...

    async def send(self, chunk: bytes) -> None: ...

    def finish(self) -> None: ...


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    gone: bool = False
    # Set by the application once it knows who is asking: the connection may then idle for
    # the longer `idle_timeout` between requests.
    authenticated: bool = False
    channel: ResponseChannel | None = field(default=None, repr=False)
    # What the application learns of the request as it answers it (see `ops.RequestFacts`).
    facts: Any = field(default=None, repr=False)
    _on_gone: list[Callable[[], None]] | None = field(default=None, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def on_gone(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the client goes away before the response has ended (at once if
        it already has)."""
        if self.gone:
            callback()
            return
        if self._on_gone is None:
            self._on_gone = []
        self._on_gone.append(callback)

    def mark_gone(self) -> None:
        if self.gone:
            return
        self.gone = True
        for callback in self._on_gone or ():
            callback()


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[Header]
    body: bytes = b""


@dataclass(slots=True)
class StreamingResponse:
    status: int
    headers: list[Header]
    chunks: AsyncIterator[bytes]


class Streamed:
    """The response was written through the request's channel."""


STREAMED = Streamed()
Response = HttpResponse | StreamingResponse | Streamed
Handler = Callable[[HttpRequest], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request that must be answered with `status` and then the connection closed."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Interim:
    """Bytes to write at once, ahead of the response: a `100 Continue`."""

    data: bytes


# What `receive` hands on: a whole request, a refusal, bytes to write now, or None when the
# client has closed its side between requests.
Item = HttpRequest | Rejection | Interim | None


class Unsendable(Exception):
    """h11 refused to frame a response on this connection (it is in no state to carry one)."""


def plain_response(status: int, text: str, headers: list[Header] | None = None) -> HttpResponse:
    body = text.encode("utf-8") + b"\n"
    base = [(b"content-type", b"text/plain; charset=utf-8")]
    return HttpResponse(status, base + (headers or []), body)


def fold_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased names; repeated fields joined with ", " (RFC 9110 section 5.3)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.lower().decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def head_size(event: h11.Request) -> int:
    """The size of the request line and header section as sent, less optional whitespace
    (RFC 9112 sections 3 and 5)."""
    line = len(event.method) + len(event.target) + len(b"  HTTP/1.1\r\n")
    fields = sum(len(name) + len(value) + 4 for name, value in event.headers.raw_items())
    return line + fields + 2


def make_request(event: h11.Request) -> HttpRequest:
    target = event.target.decode("latin-1")
    headers = fold_headers(event.headers.raw_items())
    if target[:1] != "/" and "://" in target:
        # RFC 9112 section 3.2.2: a server MUST accept the absolute form of a target, and
        # then take its host from the target, ignoring the Host field.
        headers["host"], target = split_absolute(target)
    path, _, query = target.partition("?")
    return HttpRequest(
        method=event.method.decode("ascii"),
        path=unquote(path) if "%" in path else path,
        query=query,
        headers=headers,
    )


def split_absolute(target: str) -> tuple[str, str]:
    """`http://user@host:8765/v1/mcp?x` as its host (`host:8765`) and its origin form."""
    rest = target.split("://", 1)[1]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, origin_form = rest[:cut], rest[cut:]
    if not origin_form.startswith("/"):
        origin_form = "/" + origin_form
    return authority.rpartition("@")[2], origin_form


class H1Core:
    """One connection's HTTP/1.1 state: what has been read of the current request, and how
    its response is framed."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.h11 = self._new_parser()
        self.building: HttpRequest | None = None
        self.parts: list[bytes] = []
        self.size = 0
        # Bytes read since this request began: a bound on its head's size.
        self.received = 0
        # Whether this request's response may be written without h11 (see `direct_head`),
        # and whether it was.
        self.direct = False
        self.answered_directly = False
        self.chunking = False
        self.refusing = False
        self.ended = False
        # A pipelined next request waits in h11 and has filled its read-ahead.
        self.read_ahead_full = False
        self._items: list[Item] = []

    def _new_parser(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)

    # --- input -----------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Item]:
        """What these bytes complete."""
        if self.refusing or self.ended or not data:
            return []
        self.received += len(data)
        self.h11.receive_data(data)
        return self._parse()

    def receive_eof(self) -> list[Item]:
        """The client has closed its side: what that completes or cuts short."""
        if self.refusing or self.ended:
            return []
        self.h11.receive_data(b"")
        return self._parse()

    def refuse(self, status: int, reason: str) -> Rejection:
        """The request is refused; nothing more of this connection is parsed."""
        self.refusing = True
        return Rejection(status, reason)

    def _parse(self) -> list[Item]:
        self._items = []
        try:
            while not (self.refusing or self.ended):
                event = self.h11.next_event()
                if event is h11.NEED_DATA:
                    break
                if event is h11.PAUSED:
                    self._hold_pipelined()
                    break
                self._on_event(event)
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            self._items.append(self.refuse(status, H11_REASONS.get(status, NOT_HTTP)))
        return self._items

    def _on_event(self, event: object) -> None:
        if isinstance(event, h11.Request):
            self._begin(event)
        elif isinstance(event, h11.Data):
            self._collect(event.data)
        elif isinstance(event, h11.EndOfMessage):
            self._complete()
        elif isinstance(event, h11.ConnectionClosed):
            self.ended = True
            self._items.append(None)

    def _begin(self, event: h11.Request) -> None:
        self.direct = self.chunking = False
        limit = self.limits.max_header_bytes
        if self.received > limit and head_size(event) > limit:
            # h11 bounds only a head still incomplete in its buffer; one that arrives whole in
            # a single read must be measured here (RFC 6585 section 5).
            self._items.append(self.refuse(431, HEADERS_TOO_LARGE))
            return
        request = make_request(event)
        expect = request.headers.get("expect")
        if expect is not None and expect.lower() != "100-continue":
            # RFC 9110 section 10.1.1: any other expectation may be refused with 417, and a
            # client that asks for one it relies on should not be served as if it were met.
            self._items.append(self.refuse(417, EXPECTATION))
            return
        declared = request.headers.get("content-length")
        if declared is not None and int(declared) > self.limits.max_body_bytes:
            self._items.append(self.refuse(413, BODY_TOO_LARGE))
            return
        self.building, self.parts, self.size = request, [], 0
        self.direct = (
            event.http_version == b"1.1"
            and request.method != "HEAD"
            and not _asks_to_close(request.headers.get("connection"))
        )
        if self.h11.they_are_waiting_for_100_continue:
            continuing = h11.InformationalResponse(status_code=100, headers=[])
            self._items.append(Interim(self._send(continuing)))

    def _collect(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limits.max_body_bytes:
            self._items.append(self.refuse(413, BODY_TOO_LARGE))
            return
        self.parts.append(data)

    def _complete(self) -> None:
        request, self.building = self.building, None
        assert request is not None
        request.body = b"".join(self.parts) if len(self.parts) != 1 else self.parts[0]
        self.parts = []
        self._items.append(request)

    def _hold_pipelined(self) -> None:
        """Bytes of a next request wait in h11 until this one is answered; past a bound the
        socket should be left unread, so that TCP pushes back."""
        self.read_ahead_full = len(self.h11.trailing_data[0]) >= self.limits.pipeline_buffer_bytes

    # --- the next request ------------------------------------------------------------------

    def next_cycle(self) -> list[Item] | None:
        """Ready for the next request once a response has ended: what pipelined bytes already
        complete, or None when the connection cannot carry another request."""
        if self.answered_directly:
            self.answered_directly = False
            self._renew_parser()
        elif self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        else:
            return None
        self.received = 0
        self.read_ahead_full = False
        pipelined = self.h11.trailing_data[0]
        if not pipelined:
            return []
        self.received = len(pipelined)
        return self._parse()

    def _renew_parser(self) -> None:
        """A fresh h11 connection for the next request, given the bytes the old one holds."""
        unread, closed = self.h11.trailing_data
        self.h11 = self._new_parser()
        if unread:
            self.h11.receive_data(unread)
        if closed:
            self.h11.receive_data(b"")

    def client_may_be_sending(self) -> bool:
        """Only a close in the middle of a request needs lingering: a request refused before
        its end, or bytes of one left unread.  Between requests the client has nothing more in
        flight, and lingering would only hold the connection open."""
        unread, ended = self.h11.trailing_data
        if ended:
            return False
        return self.refusing or self.h11.their_state in (h11.SEND_BODY, h11.ERROR) or bool(unread)

    @property
    def may_respond(self) -> bool:
        """No byte of a response to the current request has been written yet."""
        return self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not self.chunking

    # --- output ----------------------------------------------------------------------------

    def whole(self, response: HttpResponse, closing: bool = False) -> bytes:
        """A whole response with its Content-Length (none on 204 and 304)."""
        headers = whole_headers(response, closing)
        if self._may_write_directly(response.status, headers):
            self.answered_directly = True
            return direct_head(response.status, headers) + response.body
        return self._send(
            h11.Response(status_code=response.status, headers=headers),
            h11.Data(data=response.body) if response.body else None,
            h11.EndOfMessage(),
        )

    def head_only(self, status: int, headers: list[Header]) -> bytes:
        """RFC 9110 section 9.3.2: a response to HEAD has the header fields a GET would get and
        no content; h11 refuses body bytes on it, so none are sent."""
        return self._send(h11.Response(status_code=status, headers=headers), h11.EndOfMessage())

    def rejection(self, rejection: Rejection, closing: bool = False) -> bytes:
        """The refusal's response, or nothing when a response is already under way."""
        if not self.may_respond:
            return b""
        close = [(b"connection", b"close")]
        return self.whole(plain_response(rejection.status, rejection.reason, close), closing)

    def begin_body(self, status: int, headers: list[Header]) -> bytes:
        """A streamed response's head; its body goes out chunked (RFC 9112 section 7.1)."""
        if self._may_write_directly(status, headers):
            self.chunking = True
            return direct_head(status, [*headers, CHUNKED])
        return self._send(h11.Response(status_code=status, headers=headers))

    def body_chunk(self, chunk: bytes) -> bytes | None:
        """A piece of the body; None when there is no body under way to send it in."""
        if self.chunking:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunk else b""
        if self.h11.our_state is h11.SEND_BODY:
            return self._send(h11.Data(data=chunk))
        return None

    def end_body(self) -> bytes:
        if self.chunking:
            self.chunking = False
            self.answered_directly = True
            return b"0\r\n\r\n"
        if self.h11.our_state is h11.SEND_BODY:
            return self._send(h11.EndOfMessage())
        return b""

    # h11 spends more on writing a response (validating it, choosing its framing, moving its
    # state machine) than on parsing the request.  The common case, a response to a complete
    # HTTP/1.1 request on a connection that stays open, is written here byte for byte as h11
    # would write it (tests/test_h1_core.py checks that); the next request then gets a fresh
    # parser (`_renew_parser`).  Anything else goes through h11: HEAD, a connection that is
    # closing, a request still being read.

    def _may_write_directly(self, status: int, headers: list[Header]) -> bool:
        # 204 and 304 carry no content and no framing (RFC 9110 sections 15.3.5, 15.4.5).
        if not self.direct or status in (204, 304) or self.h11.their_state is not h11.DONE:
            return False
        if self.h11.our_state is not h11.SEND_RESPONSE:
            return False
        return all(name != b"connection" for name, _ in headers)

    def _send(self, *events: h11.Event | None) -> bytes:
        try:
            return b"".join([self.h11.send(e) or b"" for e in events if e is not None])
        except h11.LocalProtocolError as exc:
            raise Unsendable(str(exc)) from exc


# h11 names the framing field it adds in title case; the fast path writes the same bytes.
CHUNKED: Header = (b"Transfer-Encoding", b"chunked")


def whole_headers(response: HttpResponse, closing: bool = False) -> list[Header]:
    headers = list(response.headers)
    if response.status not in (204, 304):
        # RFC 9110 section 8.6: no Content-Length on a 204; a 304 has no content either.
        headers.append((b"content-length", str(len(response.body)).encode()))
    if closing:
        headers.append((b"connection", b"close"))
    return headers


def direct_head(status: int, headers: list[Header]) -> bytes:
    """A response's status line and header section, as h11 writes them (no reason phrase)."""
    lines = [b"HTTP/1.1 %d \r\n" % status]
    lines += [b"%s: %s\r\n" % field for field in headers]
    lines.append(b"\r\n")
    return b"".join(lines)


# RFC 9110 sections 5.1 and 5.5, as h11 checks them: a name is a token; a value is visible
# characters with inner spaces and tabs.
_FIELD_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")


def valid_fields(headers: list[Header]) -> bool:
    return all(_FIELD_NAME.fullmatch(name) and _FIELD_VALUE.fullmatch(v) for name, v in headers)


def _asks_to_close(connection: str | None) -> bool:
    """RFC 9112 section 9.6: the close option in the client's Connection field."""
    if connection is None:
        return False
    return any(option.strip().lower() == "close" for option in connection.split(","))
