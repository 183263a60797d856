"""HTTP/1.1 on sockets: the asyncio Protocol and the server around `h1.H1Core`.  Knows
nothing of MCP.

Parsing happens in the protocol's callbacks, as bytes arrive, by the sans-IO core; each
connection has one worker task that hands complete requests to the application and writes the
one response it returns: either whole (`HttpResponse`) or as a stream of body chunks
(`StreamingResponse`, sent chunked).  Pipelined requests are answered in order because the next
request is not parsed until the current response has ended (RFC 9112 section 9.3.2).  No task
is spawned per request, and a client that goes away is noticed by `connection_lost` without
anyone reading the socket.

Containment: whatever one connection does, or however its client leaves, ends that connection
only.  A peer that is already gone is the normal end of a connection, not an error; anything
unexpected is logged once, answered with 500 where a response can still be written, and the
connection closed.  Only the listener failing, or a signal, stops the server.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import anyio
import anyio.abc

from .config import Limits
from .h1 import (
    STREAMED,
    H1Core,
    Handler,
    Header,
    HttpRequest,
    HttpResponse,
    Interim,
    Item,
    Rejection,
    Response,
    ResponseChannel,
    Streamed,
    StreamingResponse,
    Unsendable,
    plain_response,
    valid_fields,
    whole_headers,
)
from .tally import Tally

log = logging.getLogger("sp00ky_mcp.engine.http")

# Lingering close: how many of the client's bytes to read and discard after our half-close
# before closing outright (the time is `Limits.linger_timeout`).
LINGER_BYTES = 1024 * 1024
INTERNAL = plain_response(500, "Internal server error.", [(b"connection", b"close")])


class Lifecycle:
    """What connections share with their server: the shutdown signal.  Plain data, so it can
    be built before the event loop runs."""

    def __init__(self) -> None:
        self.closing = False
        self.connections: set[Connection] = set()
        self.per_peer = Tally()

    def admit(self, peer: str, limits: Limits) -> bool:
        """Room for one more connection, overall and from this peer address."""
        if len(self.connections) >= limits.max_connections:
            return False
        bound = limits.max_connections_per_peer
        return not bound or self.per_peer.get(peer, 0) < bound

    def join(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.per_peer.add(connection.peer)

    def leave(self, connection: Connection) -> None:
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        self.per_peer.remove(connection.peer)

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
        self.core = H1Core(server.limits)
        self.number = next(server.numbers)
        self.peer = ""
        self.requests = 0
        self.transport: asyncio.Transport | None = None
        self.ready: deque[HttpRequest | Rejection | None] = deque()
        self.phase = Phase.IDLE
        self.current: HttpRequest | None = None
        self.streaming = False
        # The status of the response to the current request, and whether it is streamed.
        self.status, self._streamed = 500, False
        self.gone = False
        self.lingered = 0
        self.lingering = False
        self.reading_paused = False
        self.writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None
        # Until a request has been authenticated, a connection that idles is cut as soon as
        # one that is slow to send its headers.
        self._timeouts = {
            Phase.IDLE: min(server.limits.idle_timeout, server.limits.header_timeout),
            Phase.HEADERS: server.limits.header_timeout,
            Phase.BODY: server.limits.body_timeout,
        }
        self._expired: dict[str, Callable[[], None]] = {
            Phase.IDLE: self._idle_expired,
            Phase.HEADERS: self._headers_expired,
            Phase.BODY: self._body_expired,
        }
        self._stream_scope: anyio.CancelScope | None = None

    @property
    def request_id(self) -> str:
        """Names a request in the server log: connection number and request number on it."""
        return f"{self.number}.{self.requests}"

    # --- protocol callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always a subclass of asyncio.Transport (uvloop's).
        stream = self.transport = cast(asyncio.Transport, transport)
        self.server.transports.add(stream)
        self.peer = _address(stream)
        if not self.server.lifecycle.admit(self.peer, self.limits):
            self._send(BUSY)
            self._linger()
            return
        self.server.lifecycle.join(self)
        self._enter(Phase.IDLE)
        self.server.start_worker(self.worker)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._discard(len(data))
            return
        try:
            self._take(self.core.receive(data))
            self._await_rest()
        except Exception:
            self._parsing_failed()

    def _take(self, items: list[Item]) -> None:
        for item in items:
            if isinstance(item, Interim):
                self._send(item.data)
            else:
                self._queue(item)
        if self.core.read_ahead_full:
            self._set_reading(False)

    def _await_rest(self) -> None:
        """A request that did not arrive whole in one read gets the deadline of the part it
        still waits for; one that did never arms those deadlines at all."""
        core = self.core
        if core.refusing or core.ended:
            return
        if core.building is not None:
            if self.phase is not Phase.BODY:
                self._enter(Phase.BODY)
        elif self.phase is Phase.IDLE and core.received:
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
            # What is still unsent has no reader; a close would wait to flush it for ever.
            self._abandon()
            return False
        try:
            self._take(self.core.receive_eof())
        except Exception:
            self._parsing_failed()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        if self.transport is not None:
            self.server.transports.discard(self.transport)
        self._disarm()
        self.server.lifecycle.leave(self)
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

    def _parsing_failed(self) -> None:
        """A protocol callback that fails unexpectedly refuses the request with 500 rather than
        leaving the failure to the event loop's handler, which would only drop the socket."""
        self._log_failure()
        self._queue(self.core.refuse(500, "Internal server error."))

    def _queue(self, item: HttpRequest | Rejection | None) -> None:
        if isinstance(item, HttpRequest):
            self._enter(Phase.BUSY)
        elif isinstance(item, Rejection):
            self._disarm()
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
        self._queue(self.core.refuse(408, "Timed out reading the request headers."))

    def _body_expired(self) -> None:
        self._queue(self.core.refuse(408, "Timed out reading the request body."))

    # --- the worker ------------------------------------------------------------------------

    async def worker(self) -> None:
        try:
            await self._serve_requests()
        except Unsendable:
            # h11 holds the connection unable to carry a response: it can only be closed.
            log.debug("request %s: no response can be written; closing", self.request_id)
        except Exception:
            # Containment: this connection's failure is logged and ends this connection only.
            self._log_failure()
            self._answer_internal_error()
        finally:
            self._close()

    def _log_failure(self) -> None:
        log.exception(
            "unhandled error on connection request %s in phase %s", self.request_id, self.phase
        )

    def _answer_internal_error(self) -> None:
        """500 where no byte of a response has gone out yet; else the client learns of the
        failure from the connection closing mid-response."""
        try:
            if not (self.gone or self.streaming) and self.core.may_respond:
                self._send(self.core.whole(INTERNAL))
        except Exception:
            self._abandon()

    async def _serve_requests(self) -> None:
        while True:
            item = await self._next_item()
            if item is None:
                return
            if isinstance(item, Rejection):
                self._send(self.core.rejection(item, self.server.lifecycle.closing))
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
        items = self.core.next_cycle()
        if items is None:
            return False
        self._enter(Phase.IDLE)
        self._set_reading(True)
        if self.core.received:
            self._take(items)
            self._await_rest()
        return True

    async def _exchange(self, request: HttpRequest) -> None:
        self.requests += 1
        self.current = request
        request.channel = self
        self.streaming = False
        self.status, self._streamed = 500, False
        try:
            response = await self._call_handler(request)
            if request.authenticated:
                self._timeouts[Phase.IDLE] = self.limits.idle_timeout
            if self.streaming:
                self.finish()
            else:
                await self._write_response(response, request)
        finally:
            self.current = None
            if self._streamed:
                self.server.streams_open -= 1
            if request.facts is not None:
                self.server.completed(request.method, request.path, request.facts, self.status)

    def _streaming(self, status: int) -> None:
        self.status, self._streamed = status, True
        self.server.streams_open += 1

    # --- the response channel: an application answering while it works --------------------

    @property
    def started(self) -> bool:
        return self.streaming

    def start(self, status: int, headers: list[Header]) -> None:
        self.streaming = True
        self._streaming(status)
        self._send(self.core.begin_body(status, headers))

    async def send(self, chunk: bytes) -> None:
        data = self.core.body_chunk(chunk)
        if data is not None:
            self._send(data)
            await self._drain()

    def finish(self) -> None:
        if not (self.current and self.current.gone):
            self._send(self.core.end_body())

    async def _call_handler(self, request: HttpRequest) -> Response:
        try:
            response = await self.server.handler(request)
        except Exception:
            # The application is its own error boundary; this is the last line of defence.
            log.exception("unhandled error in the request handler, request %s", self.request_id)
            return plain_response(500, "Internal server error.")
        if isinstance(response, Streamed) or valid_fields(response.headers):
            return response
        log.error("the request handler answered with a header field that is not valid HTTP")
        if isinstance(response, StreamingResponse):
            await _aclose(response.chunks)
        return plain_response(500, "Internal server error.")

    # --- writing ---------------------------------------------------------------------------

    async def _write_response(self, response: Response, request: HttpRequest) -> None:
        if isinstance(response, Streamed):
            return
        self.status = response.status
        closing = self.server.lifecycle.closing
        if request.method == "HEAD":
            await self._write_head_only(response, closing)
        elif isinstance(response, HttpResponse):
            self._send(self.core.whole(response, closing))
            await self._drain()
        else:
            await self._write_stream(response)

    async def _write_head_only(
        self, response: HttpResponse | StreamingResponse, closing: bool
    ) -> None:
        if isinstance(response, StreamingResponse):
            await _aclose(response.chunks)
            headers = [*response.headers, *([(b"connection", b"close")] if closing else [])]
        else:
            headers = whole_headers(response, closing)
        self._send(self.core.head_only(response.status, headers))

    async def _write_stream(self, response: StreamingResponse) -> None:
        self._streaming(response.status)
        self._send(self.core.begin_body(response.status, response.headers))
        try:
            with anyio.CancelScope() as self._stream_scope:
                if not self.gone:
                    await self._pump(response.chunks)
        finally:
            self._stream_scope = None
            await _aclose(response.chunks)
        if self.current is not None and not self.current.gone:
            self._send(self.core.end_body())

    async def _pump(self, chunks: AsyncIterator[bytes]) -> None:
        async for chunk in chunks:
            data = self.core.body_chunk(chunk)
            if data is not None:
                self._send(data)
            await self._drain()
            if self.gone:
                return

    def _cancel_stream(self) -> None:
        if self._stream_scope is not None:
            self._stream_scope.cancel()

    def _send(self, data: bytes) -> None:
        """Writes to the client, unless it is gone: then the bytes have nowhere to go, and
        that is the normal end of the connection."""
        if data and not (self.gone or self.transport is None or self.transport.is_closing()):
            self.transport.write(data)

    async def _drain(self) -> None:
        """Waits while the client reads what was written; one that reads nothing for
        `send_timeout` is cut off, so that it holds no slot, task or buffer for ever."""
        if self.writing_paused and not self.gone:
            self._drained = self.loop.create_future()
            try:
                with anyio.move_on_after(self.limits.send_timeout) as waiting:
                    await self._drained
                if waiting.cancelled_caught:
                    self._abandon()
            finally:
                self._drained = None

    def _set_reading(self, on: bool) -> None:
        if self.transport is None or self.gone or on != self.reading_paused:
            return
        if self.transport.is_closing():
            return
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()
        self.reading_paused = not on

    # --- closing ---------------------------------------------------------------------------

    def _close(self) -> None:
        try:
            self._finish()
        except Exception:
            log.exception("closing connection request %s failed; aborting it", self.request_id)
            self._abandon()

    def _abandon(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        self._disarm()
        if self.gone or self.transport is None:
            return
        if self.core.client_may_be_sending():
            self._linger()
        else:
            self.transport.close()

    def _linger(self) -> None:
        """RFC 9112 section 9.6: close in stages.  Closing outright while the client is still
        sending makes our TCP stack answer its bytes with a reset, which can erase the response
        it has not read yet; so half-close, then discard what still arrives until the client
        closes too, within a bound of time and bytes."""
        transport = self.transport
        assert transport is not None
        self.lingering = True
        self._set_reading(True)
        self._disarm()
        try:
            if transport.can_write_eof() and not transport.is_closing():
                transport.write_eof()
        except OSError:
            # The client has already gone (reset, or shut down before our half-close): there
            # is nothing left to linger for.
            transport.abort()
            return
        self._timer = self.loop.call_later(self.limits.linger_timeout, transport.close)

    def _discard(self, size: int) -> None:
        self.lingered += size
        if self.lingered >= LINGER_BYTES and self.transport is not None:
            self.transport.close()


def _ignore(method: str, path: str, facts: Any, status: int) -> None:
    return None


def _address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


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

    def __init__(
        self,
        handler: Handler,
        limits: Limits,
        completed: Callable[[str, str, Any, int], None] | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits
        # Told of each request whose `facts` the application set, once it is answered.
        self.completed = completed or _ignore
        self.streams_open = 0
        self.lifecycle = Lifecycle()
        self.transports: set[asyncio.Transport] = set()
        self.port: int | None = None
        self.numbers = itertools.count(1)
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
        reuse_port: bool = False,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            listener = await loop.create_server(
                lambda: Connection(self),
                host,
                port,
                reuse_address=True,
                reuse_port=reuse_port or None,
                backlog=1024,
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
    "STREAMED",
    "Handler",
    "Header",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "Response",
    "ResponseChannel",
    "Streamed",
    "StreamingResponse",
    "plain_response",
]
