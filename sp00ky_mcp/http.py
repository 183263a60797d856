"""HTTP/1.1 on h11 over anyio byte streams.  Knows nothing of MCP.

One `Connection` reads a request, hands it to the application, and writes the one response the
application returns: either whole (`HttpResponse`) or as a stream of body chunks
(`StreamingResponse`, sent chunked).  Pipelined requests are answered in order because the next
request is not read until the current response has ended (RFC 9112 section 9.3.2).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import unquote

import anyio
import anyio.abc
import h11

from .config import Limits

log = logging.getLogger("sp00ky_mcp.http")

Header = tuple[bytes, bytes]
RECEIVE_SIZE = 65536
# Lingering close: how long, and how many of the client's bytes, to read and discard after our
# half-close before closing outright.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
_STREAM_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)
NOT_HTTP = "The request is not valid HTTP/1.1."
HEADERS_TOO_LARGE = "The request header fields are larger than the server accepts."
# Reasons for the statuses h11 hints at; anything else is plain malformed HTTP.
H11_REASONS = {431: HEADERS_TOO_LARGE}


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    disconnected: anyio.Event = field(default_factory=anyio.Event)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


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


Response = HttpResponse | StreamingResponse
Handler = Callable[[HttpRequest], Awaitable[Response]]


class RequestRejected(Exception):
    """Raised while reading a request that must be answered with `status` and then closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def plain_response(status: int, text: str, headers: list[Header] | None = None) -> HttpResponse:
    body = text.encode("utf-8") + b"\n"
    base = [(b"content-type", b"text/plain; charset=utf-8")]
    return HttpResponse(status, base + (headers or []), body)


def fold_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased names; repeated fields joined with ", " (RFC 9110 section 5.3)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
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
    path, _, query = target.partition("?")
    return HttpRequest(
        method=event.method.decode("ascii"),
        path=unquote(path),
        query=query,
        headers=fold_headers(list(event.headers)),
    )


class Lifecycle:
    """What connections share with their server: the shutdown signal and idle cancel scopes.
    Plain data, so it can be built before the event loop runs."""

    def __init__(self) -> None:
        self.closing = False
        self.idle_scopes: set[anyio.CancelScope] = set()

    def begin_shutdown(self) -> None:
        self.closing = True
        for scope in list(self.idle_scopes):
            scope.cancel()


class Connection:
    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        handler: Handler,
        limits: Limits,
        lifecycle: Lifecycle,
    ) -> None:
        self.stream = stream
        self.handler = handler
        self.limits = limits
        self.lifecycle = lifecycle
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.writable = True

    async def run(self) -> None:
        try:
            await self._serve_requests()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            await self._reject(status, H11_REASONS.get(status, NOT_HTTP))
        except RequestRejected as exc:
            await self._reject(exc.status, exc.reason)
        finally:
            await self._close()

    async def _serve_requests(self) -> None:
        while not self.lifecycle.closing:
            request = await self._read_request()
            if request is None:
                return
            await self._exchange(request)
            if not self._next_cycle():
                return

    def _next_cycle(self) -> bool:
        if not self.writable or self.h11.our_state is not h11.DONE:
            return False
        if self.h11.their_state is not h11.DONE:
            return False
        self.h11.start_next_cycle()
        return True

    async def _read_request(self) -> HttpRequest | None:
        if not await self._await_first_bytes():
            return None
        try:
            with anyio.fail_after(self.limits.header_timeout):
                event = await self._next_event()
        except TimeoutError:
            raise RequestRejected(408, "Timed out reading the request headers.") from None
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request)
        if head_size(event) > self.limits.max_header_bytes:
            # h11 bounds only a head still incomplete in its buffer; one that arrives whole in
            # a single read must be measured here (RFC 6585 section 5).
            raise RequestRejected(431, HEADERS_TOO_LARGE)
        request = make_request(event)
        request.body = await self._read_body(request)
        return request

    async def _await_first_bytes(self) -> bool:
        """Wait, up to the idle timeout, for the next request to start.  False: close quietly."""
        if self.h11.trailing_data[0] or self.h11.trailing_data[1]:
            return True
        scope = anyio.move_on_after(self.limits.idle_timeout)
        self.lifecycle.idle_scopes.add(scope)
        try:
            with scope:
                if self.lifecycle.closing:
                    return False
                return await self._receive()
            return False
        finally:
            self.lifecycle.idle_scopes.discard(scope)

    async def _receive(self) -> bool:
        try:
            data = await self.stream.receive(RECEIVE_SIZE)
        except _STREAM_GONE:
            data = b""
        self.h11.receive_data(data)
        return bool(data)

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        event = self.h11.next_event()
        while event is h11.NEED_DATA:
            await self._receive()
            event = self.h11.next_event()
        return cast(h11.Event | type[h11.PAUSED], event)

    async def _read_body(self, request: HttpRequest) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and int(declared) > self.limits.max_body_bytes:
            raise RequestRejected(413, "The request body is larger than the server accepts.")
        if self.h11.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        try:
            with anyio.fail_after(self.limits.body_timeout):
                return await self._collect_body()
        except TimeoutError:
            raise RequestRejected(408, "Timed out reading the request body.") from None

    async def _collect_body(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            if not isinstance(event, h11.Data):
                raise RequestRejected(400, "The request body ended early.")
            size += len(event.data)
            if size > self.limits.max_body_bytes:
                raise RequestRejected(413, "The request body is larger than the server accepts.")
            parts.append(event.data)

    async def _exchange(self, request: HttpRequest) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_disconnect, request.disconnected)
            try:
                response = await self._call_handler(request)
                await self._write_response(response, request)
            finally:
                tg.cancel_scope.cancel()

    async def _call_handler(self, request: HttpRequest) -> Response:
        try:
            return await self.handler(request)
        except Exception:
            # The application is its own error boundary; this is the last line of defence.
            log.exception("unhandled error in the request handler")
            return plain_response(500, "Internal server error.")

    async def _watch_disconnect(self, disconnected: anyio.Event) -> None:
        """Read ahead while a response is produced: EOF means the client went away.  Bytes are
        buffered in h11 for the next pipelined request, up to a bound."""
        while len(self.h11.trailing_data[0]) < self.limits.pipeline_buffer_bytes:
            if self.h11.trailing_data[1]:
                break
            if not await self._receive():
                break
        if self.h11.trailing_data[1]:
            disconnected.set()

    async def _write_response(self, response: Response, request: HttpRequest) -> None:
        if request.method == "HEAD":
            await self._write_head_only(response)
        elif isinstance(response, HttpResponse):
            await self._write_whole(response)
        else:
            await self._write_stream(response, request.disconnected)

    async def _write_head_only(self, response: Response) -> None:
        """RFC 9110 section 9.3.2: a response to HEAD has the header fields a GET would get and
        no content; h11 refuses body bytes on it, so none are sent."""
        if isinstance(response, StreamingResponse):
            await _aclose(response.chunks)
            headers = self._closing(response.headers)
        else:
            headers = self._whole_headers(response)
        await self._send(
            h11.Response(status_code=response.status, headers=headers), h11.EndOfMessage()
        )

    def _whole_headers(self, response: HttpResponse) -> list[Header]:
        length = (b"content-length", str(len(response.body)).encode())
        return self._closing([*response.headers, length])

    def _closing(self, headers: list[Header]) -> list[Header]:
        if self.lifecycle.closing:
            return [*headers, (b"connection", b"close")]
        return headers

    async def _write_whole(self, response: HttpResponse) -> None:
        headers = self._whole_headers(response)
        await self._send(
            h11.Response(status_code=response.status, headers=headers),
            h11.Data(data=response.body) if response.body else None,
            h11.EndOfMessage(),
        )

    async def _write_stream(self, response: StreamingResponse, disconnected: anyio.Event) -> None:
        await self._send(h11.Response(status_code=response.status, headers=response.headers))
        try:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_cancel_when_set, disconnected, scope)
                    await self._pump(response.chunks)
                    tg.cancel_scope.cancel()
        finally:
            await _aclose(response.chunks)
        if not disconnected.is_set():
            await self._send(h11.EndOfMessage())

    async def _pump(self, chunks: AsyncIterator[bytes]) -> None:
        async for chunk in chunks:
            await self._send(h11.Data(data=chunk))
            if not self.writable:
                return

    async def _send(self, *events: h11.Event | None) -> None:
        if not self.writable:
            return
        try:
            data = b"".join(self.h11.send(e) or b"" for e in events if e is not None)
            await self.stream.send(data)
        except (*_STREAM_GONE, h11.LocalProtocolError):
            self.writable = False

    async def _reject(self, status: int, reason: str) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = plain_response(status, reason, [(b"connection", b"close")])
        await self._write_whole(response)

    async def _close(self) -> None:
        try:
            with contextlib.suppress(*_STREAM_GONE):
                await self._linger()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(*_STREAM_GONE):
                await self.stream.aclose()

    def _client_may_be_sending(self) -> bool:
        """Only a close in the middle of a request needs lingering: a request refused before
        its end, or bytes of one left unread.  Between requests the client has nothing more in
        flight, and lingering would only hold the connection open."""
        unread, ended = self.h11.trailing_data
        if not self.writable or ended:
            return False
        return self.h11.their_state in (h11.SEND_BODY, h11.ERROR) or bool(unread)

    async def _linger(self) -> None:
        """RFC 9112 section 9.6: close in stages.  Closing outright while the client is still
        sending makes our TCP stack answer its bytes with a reset, which can erase the response
        it has not read yet; so half-close, then discard what still arrives until the client
        closes too, within a bound of time and bytes."""
        if not self._client_may_be_sending():
            return
        await self.stream.send_eof()
        discarded = 0
        with anyio.move_on_after(LINGER_SECONDS):
            while discarded < LINGER_BYTES:
                discarded += len(await self.stream.receive(RECEIVE_SIZE))


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        with anyio.CancelScope(shield=True):
            await close()


class HttpServer:
    """Accepts connections and runs one `Connection` each; `shutdown()` drains gracefully."""

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.lifecycle = Lifecycle()
        self.open_connections = 0
        self._all_closed: anyio.Event | None = None
        self._listener_scope: anyio.CancelScope | None = None

    async def serve(
        self,
        listener: anyio.abc.Listener[anyio.abc.SocketStream],
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        self._all_closed = anyio.Event()
        async with anyio.create_task_group() as tasks:
            with anyio.CancelScope() as self._listener_scope:
                task_status.started()
                if not self.lifecycle.closing:
                    await listener.serve(self._accept, tasks)
            await self._drain(tasks)
        await listener.aclose()

    async def _drain(self, tasks: anyio.abc.TaskGroup) -> None:
        if self.open_connections and self._all_closed is not None:
            with anyio.move_on_after(self.limits.shutdown_grace):
                await self._all_closed.wait()
        tasks.cancel_scope.cancel()

    def shutdown(self) -> None:
        self.lifecycle.begin_shutdown()
        if self._listener_scope is not None:
            self._listener_scope.cancel()

    async def _accept(self, stream: anyio.abc.SocketStream) -> None:
        if self.open_connections >= self.limits.max_connections:
            await _refuse_busy(stream)
            return
        self.open_connections += 1
        try:
            await Connection(stream, self.handler, self.limits, self.lifecycle).run()
        finally:
            self.open_connections -= 1
            if not self.open_connections and self.lifecycle.closing and self._all_closed:
                self._all_closed.set()


async def _refuse_busy(stream: anyio.abc.SocketStream) -> None:
    body = b"The server has too many open connections; retry shortly.\n"
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )
    with anyio.CancelScope(shield=True), contextlib.suppress(*_STREAM_GONE):
        await stream.send(head + body)
        await stream.aclose()


__all__ = [
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "StreamingResponse",
]
