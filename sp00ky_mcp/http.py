"""HTTP/1.1 on h11, driven from an asyncio Protocol.  Knows nothing of MCP.

Parsing happens in the protocol's callbacks, as bytes arrive; each connection has one worker
task that hands complete requests to the application and writes the one response it returns:
either whole (`HttpResponse`) or as a stream of body chunks (`StreamingResponse`, sent chunked).
Pipelined requests are answered in order because the next request is not parsed until the
current response has ended (RFC 9112 section 9.3.2).  No task is spawned per request, and a
client that goes away is noticed by `connection_lost` without anyone reading the socket.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import unquote

import anyio
import anyio.abc
import h11

from .config import Limits

log = logging.getLogger("sp00ky_mcp.http")

Header = tuple[bytes, bytes]
# Lingering close: how long, and how many of the client's bytes, to read and discard after our
# half-close before closing outright.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
NOT_HTTP = "The request is not valid HTTP/1.1."
BODY_TOO_LARGE = "The request body is larger than the server accepts."
HEADERS_TOO_LARGE = "The request header fields are larger than the server accepts."
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
    channel: ResponseChannel | None = field(default=None, repr=False)
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
    if target[:1] != "/" and "://" in target:
        # RFC 9112 section 3.2.2: a server MUST accept the absolute form of a target.
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path, _, query = target.partition("?")
    return HttpRequest(
        method=event.method.decode("ascii"),
        path=unquote(path) if "%" in path else path,
        query=query,
        headers=fold_headers(event.headers.raw_items()),
    )


class Lifecycle:
    """What connections share with their server: the shutdown signal.  Plain data, so it can
    be built before the event loop runs."""

    def __init__(self) -> None:
        self.closing = False
        self.connections: set[Connection] = set()

    def begin_shutdown(self) -> None:
        self.closing = True
        for connection in list(self.connections):
            connection.wake()


class Phase:
    """Where a connection is in its request cycle; it decides which deadline is armed."""

    IDLE = "idle"
    HEADERS = "headers"
    BODY = "body"
    BUSY = "busy"


class Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.h11 = self._new_parser()
        self.transport: asyncio.Transport | None = None
        self.ready: deque[HttpRequest | Rejection | None] = deque()
        self.building: HttpRequest | None = None
        self.parts: list[bytes] = []
        self.size = 0
        # Bytes read since this request began: a bound on its head's size.
        self.received = 0
        # Whether this request's response may be written without h11 (see `_write_direct`),
        # and whether it was.
        self.direct = False
        self.answered_directly = False
        self.chunking = False
        self.phase = Phase.IDLE
        self.current: HttpRequest | None = None
        self.streaming = False
        self.gone = False
        self.refusing = False
        self.ended = False
        self.lingered = 0
        self.lingering = False
        self.reading_paused = False
        self.writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None
        self._timeouts = {
            Phase.IDLE: server.limits.idle_timeout,
            Phase.HEADERS: server.limits.header_timeout,
            Phase.BODY: server.limits.body_timeout,
        }
        self._expired: dict[str, Callable[[], None]] = {
            Phase.IDLE: self._idle_expired,
            Phase.HEADERS: self._headers_expired,
            Phase.BODY: self._body_expired,
        }
        self._stream_scope: anyio.CancelScope | None = None

    def _new_parser(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)

    # --- protocol callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always a subclass of asyncio.Transport (uvloop's).
        stream = self.transport = cast(asyncio.Transport, transport)
        self.server.transports.add(stream)
        if len(self.server.lifecycle.connections) >= self.limits.max_connections:
            stream.write(BUSY)
            self._linger()
            return
        self.server.lifecycle.connections.add(self)
        self._enter(Phase.IDLE)
        self.server.start_worker(self.worker)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._discard(len(data))
            return
        if self.refusing:
            return
        self.received += len(data)
        self.h11.receive_data(data)
        self._parse()
        self._await_rest()

    def _await_rest(self) -> None:
        """A request that did not arrive whole in one read gets the deadline of the part it
        still waits for; one that did never arms those deadlines at all."""
        if self.refusing or self.ended:
            return
        if self.building is not None:
            if self.phase is not Phase.BODY:
                self._enter(Phase.BODY)
        elif self.phase is Phase.IDLE and self.received:
            self._enter(Phase.HEADERS)

    def eof_received(self) -> bool:
        """The client closed its side.  Between requests that ends the connection; while a
        response is owed the client is taken to have gone away, and the connection is closed
        at once so its socket and slot are not held while the handler finishes (what the
        handler still sends is kept for Last-Event-ID replay, where the era provides it)."""
        if self.lingering:
            return False
        if self.current is not None:
            self.current.mark_gone()
            self._cancel_stream()
            return False
        if not (self.refusing or self.ended):
            self.h11.receive_data(b"")
            self._parse()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        if self.transport is not None:
            self.server.transports.discard(self.transport)
        self._disarm()
        self.server.lifecycle.connections.discard(self)
        if self.current is not None:
            self.current.mark_gone()
        self._cancel_stream()
        _resolve(self._drained)
        self.wake()
        self.server.connection_closed()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _resolve(self._drained)

    # --- parsing ---------------------------------------------------------------------------

    def _parse(self) -> None:
        try:
            while not (self.refusing or self.ended):
                event = self.h11.next_event()
                if event is h11.NEED_DATA:
                    return
                if event is h11.PAUSED:
                    self._hold_pipelined()
                    return
                self._on_event(event)
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            self._refuse(status, H11_REASONS.get(status, NOT_HTTP))

    def _on_event(self, event: object) -> None:
        if isinstance(event, h11.Request):
            self._begin(event)
        elif isinstance(event, h11.Data):
            self._collect(event.data)
        elif isinstance(event, h11.EndOfMessage):
            self._complete()
        elif isinstance(event, h11.ConnectionClosed):
            self.ended = True
            self._queue(None)

    def _begin(self, event: h11.Request) -> None:
        self.direct = self.chunking = False
        limit = self.limits.max_header_bytes
        if self.received > limit and head_size(event) > limit:
            # h11 bounds only a head still incomplete in its buffer; one that arrives whole in
            # a single read must be measured here (RFC 6585 section 5).
            self._refuse(431, HEADERS_TOO_LARGE)
            return
        request = make_request(event)
        declared = request.headers.get("content-length")
        if declared is not None and int(declared) > self.limits.max_body_bytes:
            self._refuse(413, BODY_TOO_LARGE)
            return
        self.building, self.parts, self.size = request, [], 0
        self.direct = (
            event.http_version == b"1.1"
            and request.method != "HEAD"
            and not _asks_to_close(request.headers.get("connection"))
        )
        if self.h11.they_are_waiting_for_100_continue:
            self._write(h11.InformationalResponse(status_code=100, headers=[]))

    def _collect(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limits.max_body_bytes:
            self._refuse(413, BODY_TOO_LARGE)
            return
        self.parts.append(data)

    def _complete(self) -> None:
        request, self.building = self.building, None
        assert request is not None
        request.body = b"".join(self.parts) if len(self.parts) != 1 else self.parts[0]
        self.parts = []
        self._enter(Phase.BUSY)
        self._queue(request)

    def _hold_pipelined(self) -> None:
        """Bytes of a next request wait in h11 until this one is answered; past a bound the
        socket is left unread, so that TCP pushes back."""
        if len(self.h11.trailing_data[0]) >= self.limits.pipeline_buffer_bytes:
            self._set_reading(False)

    def _refuse(self, status: int, reason: str) -> None:
        self.refusing = True
        self._disarm()
        self._queue(Rejection(status, reason))

    def _queue(self, item: HttpRequest | Rejection | None) -> None:
        self.ready.append(item)
        self.wake()

    def wake(self) -> None:
        _resolve(self._waiter)

    # --- deadlines -------------------------------------------------------------------------

    def _enter(self, phase: str) -> None:
        """Each phase has its deadline.  One timer per connection is kept and moved lazily:
        when it fires early it re-arms itself, so the hot path never churns timers."""
        self.phase = phase
        timeout = self._timeouts.get(phase)
        if timeout is None:
            self.deadline = None
            return
        self.deadline = self.loop.time() + timeout
        if self._timer is None or self._timer.when() > self.deadline:
            self._arm_at(self.deadline)

    def _arm_at(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)

    def _disarm(self) -> None:
        self.deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.deadline is None:
            return
        if self.loop.time() < self.deadline:
            self._arm_at(self.deadline)
            return
        self.deadline = None
        self._expired[self.phase]()

    def _idle_expired(self) -> None:
        self._queue(None)

    def _headers_expired(self) -> None:
        self._refuse(408, "Timed out reading the request headers.")

    def _body_expired(self) -> None:
        self._refuse(408, "Timed out reading the request body.")

    # --- the worker ------------------------------------------------------------------------

    async def worker(self) -> None:
        try:
            await self._serve_requests()
        finally:
            self._finish()

    async def _serve_requests(self) -> None:
        while True:
            item = await self._next_item()
            if item is None:
                return
            if isinstance(item, Rejection):
                self._write_rejection(item)
                return
            await self._exchange(item)
            if not self._next_cycle():
                return

    async def _next_item(self) -> HttpRequest | Rejection | None:
        while not self.ready:
            if self.gone or (self.server.lifecycle.closing and self.phase is Phase.IDLE):
                return None
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.ready.popleft()

    def _next_cycle(self) -> bool:
        if self.gone:
            return False
        if self.answered_directly:
            self.answered_directly = False
            self._renew_parser()
        elif self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        else:
            return False
        self.received = 0
        self._enter(Phase.IDLE)
        self._set_reading(True)
        pipelined = self.h11.trailing_data[0]
        if pipelined:
            self.received = len(pipelined)
            self._parse()
            self._await_rest()
        return True

    async def _exchange(self, request: HttpRequest) -> None:
        self.current = request
        request.channel = self
        self.streaming = False
        try:
            response = await self._call_handler(request)
            if self.streaming:
                self.finish()
            else:
                await self._write_response(response, request)
        finally:
            self.current = None

    # --- the response channel: an application answering while it works --------------------

    @property
    def started(self) -> bool:
        return self.streaming

    def start(self, status: int, headers: list[Header]) -> None:
        self.streaming = True
        self._begin_body(status, headers)

    async def send(self, chunk: bytes) -> None:
        if self._body_chunk(chunk):
            await self._drain()

    def finish(self) -> None:
        if not (self.current and self.current.gone):
            self._end_body()

    async def _call_handler(self, request: HttpRequest) -> Response:
        try:
            response = await self.server.handler(request)
        except Exception:
            # The application is its own error boundary; this is the last line of defence.
            log.exception("unhandled error in the request handler")
            return plain_response(500, "Internal server error.")
        if isinstance(response, Streamed) or _valid_fields(response.headers):
            return response
        log.error("the request handler answered with a header field that is not valid HTTP")
        if isinstance(response, StreamingResponse):
            await _aclose(response.chunks)
        return plain_response(500, "Internal server error.")

    # --- writing ---------------------------------------------------------------------------

    async def _write_response(self, response: Response, request: HttpRequest) -> None:
        if isinstance(response, Streamed):
            return
        if request.method == "HEAD":
            await self._write_head_only(response)
        elif isinstance(response, HttpResponse):
            self._write_whole(response)
            await self._drain()
        else:
            await self._write_stream(response)

    async def _write_head_only(self, response: HttpResponse | StreamingResponse) -> None:
        """RFC 9110 section 9.3.2: a response to HEAD has the header fields a GET would get and
        no content; h11 refuses body bytes on it, so none are sent."""
        if isinstance(response, StreamingResponse):
            await _aclose(response.chunks)
            headers = self._closing(response.headers)
        else:
            headers = self._whole_headers(response)
        self._write(h11.Response(status_code=response.status, headers=headers), h11.EndOfMessage())

    def _whole_headers(self, response: HttpResponse) -> list[Header]:
        if response.status in (204, 304):
            # RFC 9110 section 8.6: no Content-Length on a 204; a 304 has no content either.
            return self._closing(list(response.headers))
        length = (b"content-length", str(len(response.body)).encode())
        return self._closing([*response.headers, length])

    def _closing(self, headers: list[Header]) -> list[Header]:
        if self.server.lifecycle.closing:
            return [*headers, (b"connection", b"close")]
        return headers

    def _write_whole(self, response: HttpResponse) -> None:
        headers = self._whole_headers(response)
        if self._may_write_directly(response.status, headers):
            self._write_direct(response.status, headers, response.body)
            return
        self._write(
            h11.Response(status_code=response.status, headers=headers),
            h11.Data(data=response.body) if response.body else None,
            h11.EndOfMessage(),
        )

    # h11 spends more on writing a response (validating it, choosing its framing, moving its
    # state machine) than on parsing the request.  The common case, a whole response with a
    # Content-Length to a complete HTTP/1.1 request on a connection that stays open, is
    # written here; the next request then gets a fresh parser (`_renew_parser`).  Anything
    # else goes through h11: HEAD, a connection that is closing, a request still being read.

    def _may_write_directly(self, status: int, headers: list[Header]) -> bool:
        # 204 and 304 carry no content and no framing (RFC 9110 sections 15.3.5, 15.4.5).
        if not self.direct or status in (204, 304) or self.h11.their_state is not h11.DONE:
            return False
        if self.h11.our_state is not h11.SEND_RESPONSE:
            return False
        return all(name != b"connection" for name, _ in headers)

    def _write_direct(self, status: int, headers: list[Header], body: bytes) -> None:
        self._write_raw(_head(status, headers) + body)
        self.answered_directly = True

    def _write_raw(self, data: bytes) -> None:
        if not (self.gone or self.transport is None):
            self.transport.write(data)

    # A streamed response (an SSE reply) is written the same way when it may be: chunked
    # (RFC 9112 section 7.1), as h11 would frame it.

    def _begin_body(self, status: int, headers: list[Header]) -> None:
        if self._may_write_directly(status, headers):
            self._write_raw(_head(status, [*headers, (b"transfer-encoding", b"chunked")]))
            self.chunking = True
        else:
            self._write(h11.Response(status_code=status, headers=headers))

    def _body_chunk(self, chunk: bytes) -> bool:
        """Sends a piece of the body; False when there is no body under way to send it in."""
        if self.chunking:
            if chunk:
                self._write_raw(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            return True
        if self.h11.our_state is h11.SEND_BODY:
            self._write(h11.Data(data=chunk))
            return True
        return False

    def _end_body(self) -> None:
        if self.chunking:
            self.chunking = False
            self._write_raw(b"0\r\n\r\n")
            self.answered_directly = True
        elif self.h11.our_state is h11.SEND_BODY:
            self._write(h11.EndOfMessage())

    def _renew_parser(self) -> None:
        """A fresh h11 connection for the next request, given the bytes the old one holds."""
        unread, closed = self.h11.trailing_data
        self.h11 = self._new_parser()
        if unread:
            self.h11.receive_data(unread)
        if closed:
            self.h11.receive_data(b"")

    async def _write_stream(self, response: StreamingResponse) -> None:
        self._begin_body(response.status, response.headers)
        try:
            with anyio.CancelScope() as self._stream_scope:
                if not self.gone:
                    await self._pump(response.chunks)
        finally:
            self._stream_scope = None
            await _aclose(response.chunks)
        if self.current is not None and not self.current.gone:
            self._end_body()

    async def _pump(self, chunks: AsyncIterator[bytes]) -> None:
        async for chunk in chunks:
            self._body_chunk(chunk)
            await self._drain()
            if self.gone:
                return

    def _cancel_stream(self) -> None:
        if self._stream_scope is not None:
            self._stream_scope.cancel()

    def _write(self, *events: h11.Event | None) -> None:
        if self.gone or self.transport is None:
            return
        try:
            data = b"".join([self.h11.send(e) or b"" for e in events if e is not None])
        except h11.LocalProtocolError:
            self.gone = True
            return
        self.transport.write(data)

    async def _drain(self) -> None:
        if self.writing_paused and not self.gone:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    def _write_rejection(self, rejection: Rejection) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = plain_response(rejection.status, rejection.reason, [(b"connection", b"close")])
        self._write_whole(response)

    def _set_reading(self, on: bool) -> None:
        if self.transport is None or self.gone or on != self.reading_paused:
            return
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()
        self.reading_paused = not on

    # --- closing ---------------------------------------------------------------------------

    def _finish(self) -> None:
        self._disarm()
        if self.gone or self.transport is None:
            return
        if self._client_may_be_sending():
            self._linger()
        else:
            self.transport.close()

    def _client_may_be_sending(self) -> bool:
        """Only a close in the middle of a request needs lingering: a request refused before
        its end, or bytes of one left unread.  Between requests the client has nothing more in
        flight, and lingering would only hold the connection open."""
        unread, ended = self.h11.trailing_data
        if ended:
            return False
        return self.refusing or self.h11.their_state in (h11.SEND_BODY, h11.ERROR) or bool(unread)

    def _linger(self) -> None:
        """RFC 9112 section 9.6: close in stages.  Closing outright while the client is still
        sending makes our TCP stack answer its bytes with a reset, which can erase the response
        it has not read yet; so half-close, then discard what still arrives until the client
        closes too, within a bound of time and bytes."""
        assert self.transport is not None
        self.lingering = True
        self._set_reading(True)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)

    def _discard(self, size: int) -> None:
        self.lingered += size
        if self.lingered >= LINGER_BYTES and self.transport is not None:
            self.transport.close()


# RFC 9110 sections 5.1 and 5.5, as h11 checks them: a name is a token; a value is visible
# characters with inner spaces and tabs.
_FIELD_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")


def _head(status: int, headers: list[Header]) -> bytes:
    """A response's status line and header section, as h11 writes them (no reason phrase)."""
    lines = [b"HTTP/1.1 %d \r\n" % status]
    lines += [b"%s: %s\r\n" % field for field in headers]
    lines.append(b"\r\n")
    return b"".join(lines)


def _valid_fields(headers: list[Header]) -> bool:
    return all(_FIELD_NAME.fullmatch(name) and _FIELD_VALUE.fullmatch(v) for name, v in headers)


def _asks_to_close(connection: str | None) -> bool:
    """RFC 9112 section 9.6: the close option in the client's Connection field."""
    if connection is None:
        return False
    return any(option.strip().lower() == "close" for option in connection.split(","))


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        with anyio.CancelScope(shield=True):
            await close()


BUSY_BODY = b"The server has too many open connections; retry shortly.\n"
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
    + str(len(BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + BUSY_BODY
)


class HttpServer:
    """Listens, runs one worker task per connection, and drains gracefully on `shutdown()`:
    stop accepting, let in-flight requests finish within the grace period, then cancel."""

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.lifecycle = Lifecycle()
        self.transports: set[asyncio.Transport] = set()
        self.port: int | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        # asyncio's primitives bind to a loop only when first awaited, so they can be made here.
        self._stop = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._done = asyncio.Event()

    @property
    def open_connections(self) -> int:
        return len(self.lifecycle.connections)

    async def serve(
        self,
        host: str,
        port: int,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            listener = await loop.create_server(
                lambda: Connection(self), host, port, reuse_address=True, backlog=1024
            )
            self.port = int(listener.sockets[0].getsockname()[1])
            task_status.started(self.port)
            if not self.lifecycle.closing:
                await self._stop.wait()
            listener.close()
            await self._drain(tasks)
        for transport in list(self.transports):
            transport.abort()
        self._done.set()

    async def stopped(self) -> None:
        await self._done.wait()

    async def _drain(self, tasks: anyio.abc.TaskGroup) -> None:
        if self.open_connections:
            with anyio.move_on_after(self.limits.shutdown_grace):
                await self._all_closed.wait()
        tasks.cancel_scope.cancel()

    def start_worker(self, worker: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._tasks is not None
        self._tasks.start_soon(worker)

    def connection_closed(self) -> None:
        if not self.open_connections and self.lifecycle.closing:
            self._all_closed.set()

    def shutdown(self) -> None:
        self.lifecycle.begin_shutdown()
        self._stop.set()
        self.connection_closed()


__all__ = [
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "StreamingResponse",
]
