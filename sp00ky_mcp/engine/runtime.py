"""The IO-side companions of a handshake-era session: its event streams, the requests it is
running (so `notifications/cancelled` can stop them) and the server-to-client requests it
awaits answers to."""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Awaitable
from functools import partial
from typing import Any, TypeVar

import anyio

from . import jsonrpc, sse
from .errors import ToolError
from .events import OPEN, Entry, EventLog, LocalEventLog
from .http import ResponseChannel
from .streams import EventStream

MAX_RETAINED_STREAMS = 32
# The bytes a session's ended reply streams keep for Last-Event-ID replay, all together: a
# client that asks for every reply as a stream cannot make the server keep its 32 largest.
MAX_RETAINED_BYTES = 16 * 1024 * 1024
# The bytes the ended reply streams of all sessions keep together, in one process: a token
# may open 64 sessions, and each session's own bound times 64 is a gigabyte.
MAX_RETAINED_BYTES_ALL = 256 * 1024 * 1024
T = TypeVar("T")


class CallInterrupt:
    """Stops a call running in the current task, as an anyio cancel scope would, at a
    fraction of its cost on the hot path: it cancels the task and recognises its own
    cancellation when the call ends, letting any other (a server shutting down) through."""

    __slots__ = ("finished", "requested", "task")

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None, "calls run in a task"
        self.task = task
        self.requested = False
        self.finished = False

    def cancel(self) -> None:
        if not (self.requested or self.finished):
            self.requested = True
            self.task.cancel()

    async def run(self, call: Awaitable[T]) -> T | None:
        """The call's result; None when it was interrupted."""
        try:
            result = await call
        except asyncio.CancelledError:
            self.finished = True
            if not self.requested or self.task.uncancel() > 0:
                raise
            return None
        self.finished = True
        if self.requested:
            await self._absorb()
        return result

    async def _absorb(self) -> None:
        """Asked to stop while it ran without awaiting: the task's pending cancellation is
        taken here, so that it does not land on the connection's next await."""
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            if self.task.uncancel() > 0:
                raise


class Waiter:
    __slots__ = ("event", "response")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.response: jsonrpc.Response | None = None


class Retained:
    """The ended reply streams of every session, in the order they were measured, with the
    bytes each keeps: past `limit` the oldest go, whichever session they are of (resuming
    one then gets 404, as past a session's own bounds)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = MAX_RETAINED_BYTES_ALL if limit is None else limit
        self.held = 0
        self._kept: OrderedDict[tuple[int, str], tuple[SessionRuntime, int]] = OrderedDict()

    def add(self, runtime: SessionRuntime, stream_id: str, size: int) -> None:
        self._kept[(id(runtime), stream_id)] = (runtime, size)
        self.held += size
        while self.held > self.limit:
            (_, oldest), (owner, dropped) = self._kept.popitem(last=False)
            self.held -= dropped
            owner.drop(oldest)

    def remove(self, runtime: SessionRuntime, stream_id: str) -> None:
        kept = self._kept.pop((id(runtime), stream_id), None)
        if kept is not None:
            self.held -= kept[1]


class SessionRuntime:
    def __init__(
        self,
        replay_capacity: int,
        session_id: str = "",
        events: EventLog | None = None,
        retained: Retained | None = None,
    ) -> None:
        self.replay_capacity = replay_capacity
        self.retained = retained or Retained()
        self.session_id = session_id
        self.events = events or LocalEventLog()
        self.streams: OrderedDict[str, EventStream] = OrderedDict()
        self.standalone: EventStream | None = None
        self.standalone_listeners = 0
        self.running: dict[jsonrpc.RequestId, CallInterrupt] = {}
        self.pending: dict[jsonrpc.RequestId, Waiter] = {}
        # The session as this process last saw it (its subscriptions filter announcements).
        self.session: Any = None
        self._next_id = 0
        self._id_prefix = secrets.token_hex(3) + "-" if self.events.shared else ""
        self._sizes: dict[str, int] = {}

    def new_stream(self) -> EventStream:
        stream = EventStream(secrets.token_hex(8), self.replay_capacity)
        if self.events.shared:
            stream.on_entry = partial(self.events.record, self.session_id, stream.stream_id)
            # Kept from its start, so that its priming event id names a stream other
            # replicas can resume even before its first event.
            stream.on_entry(Entry(OPEN, 0))
        self.streams[stream.stream_id] = stream
        while len(self.streams) > MAX_RETAINED_STREAMS:
            self.drop(next(iter(self.streams)))
        return stream

    def bound_replay(self) -> None:
        """Drops the oldest ended streams until those left keep at most MAX_RETAINED_BYTES
        (and all sessions' together at most their `Retained` limit); a dropped stream can no
        longer be resumed (404), as one past the count bound."""
        for stream in [s for s in self.streams.values() if s.closed]:
            if stream.stream_id not in self._sizes:  # an ended stream no longer changes
                self._sizes[stream.stream_id] = size = _retained(stream)
                self.retained.add(self, stream.stream_id, size)
        held = sum(self._sizes.values())
        for stream_id in [i for i in self.streams if i in self._sizes]:
            if held <= MAX_RETAINED_BYTES:
                return
            held -= self._sizes[stream_id]
            self.drop(stream_id)

    def drop(self, stream_id: str) -> None:
        """A stream no longer kept for replay."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.close()
        if self._sizes.pop(stream_id, None) is not None:
            self.retained.remove(self, stream_id)

    def open_standalone(self) -> EventStream | None:
        """At most one client listens on the standalone GET stream at a time (transports,
        "Listening for Messages from the Server"); None while one does.  The stream outlives
        a dropped connection, so a reconnecting client can resume it with Last-Event-ID."""
        if self.standalone_listeners:
            return None
        if self.standalone is None or self.standalone.closed:
            self.standalone = self.new_stream()
        return self.standalone

    def publish_unrelated(self, data: bytes) -> None:
        """Server-initiated messages unrelated to a request go on the standalone stream, when
        the client has opened one; otherwise there is nowhere to send them."""
        if self.standalone is not None and not self.standalone.closed:
            self.standalone.publish(data)

    def next_request_id(self) -> str:
        """Unique to this runtime: calls of one session on two replicas may both ask the
        client something, and an answer must not settle the other replica's question."""
        self._next_id += 1
        return f"s-{self._id_prefix}{self._next_id}"

    def resolve(self, response: jsonrpc.Response) -> bool:
        waiter = self.pending.get(response.id)
        if waiter is None:
            return False
        waiter.response = response
        waiter.event.set()
        return True

    def cancel(self, request_id: Any) -> bool:
        """Cancellation is advisory (basic/utilities/cancellation): an id we do not know, or
        one that is not a valid id at all, is ignored.  Whether the call runs here."""
        if isinstance(request_id, bool) or not isinstance(request_id, str | int):
            return True  # nothing to tell anyone
        call = self.running.get(request_id)
        if call is None:
            return False
        call.cancel()
        return True

    def close(self) -> None:
        for call in self.running.values():
            call.cancel()
        for stream in self.streams.values():
            stream.close()
        for stream_id in self._sizes:
            self.retained.remove(self, stream_id)
        self._sizes.clear()
        for waiter in self.pending.values():
            waiter.event.set()


def _retained(stream: EventStream) -> int:
    return sum(len(item.data) for item in stream.items)


class DetachedPeer:
    """For requests whose reply is a single JSON body (initialize, the calls of a batch):
    there is no stream to carry notifications, so they are dropped, and a request to the
    client could never be answered, so it is refused at once rather than waited on."""

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        return None

    def interrupt(self) -> None:
        return None

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        raise ToolError(
            f"A batched request cannot carry a '{method}' request to the client; "
            "send this call on its own."
        )


def answer_of(method: str, response: jsonrpc.Response | None) -> Any:
    if response is None:
        raise ToolError(f"The session ended before the client answered '{method}'.")
    if response.error is not None:
        reason = response.error.get("message", "no reason given")
        raise ToolError(f"The client refused the '{method}' request: {reason}")
    return response.result


class InlinePeer:
    """Runs with a handler in the connection's own task.  Nothing is sent until the handler
    emits its first message; then the reply becomes an SSE stream through the request's
    channel, and every message is also kept in an event stream for Last-Event-ID replay
    (handshake era).  A handler that emits nothing gets a plain JSON reply."""

    def __init__(
        self,
        channel: ResponseChannel,
        runtime: SessionRuntime | None,
        prime: bool,
        retry_ms: int,
        capacity: int,
    ) -> None:
        self.channel = channel
        self.runtime = runtime
        self.prime = prime
        self.retry_ms = retry_ms
        self.capacity = capacity
        self.stream: EventStream | None = None
        self.detached = False

    @property
    def with_ids(self) -> bool:
        """Stateless replies are not resumable, so their events carry no ids (2026-07-28)."""
        return self.runtime is not None

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self._emit(jsonrpc.encode_notification(method, params))

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        if self.runtime is None:
            raise ToolError(f"This connection cannot carry a '{method}' request to the client.")
        request_id = self.runtime.next_request_id()
        waiter = self.runtime.pending[request_id] = Waiter()
        try:
            await self._emit(jsonrpc.encode_request(request_id, method, params))
            await waiter.event.wait()
        finally:
            self.runtime.pending.pop(request_id, None)
        return answer_of(method, waiter.response)

    def interrupt(self) -> None:
        """2025-11-25 SSE polling: end this HTTP response now; what follows is replayed to the
        client when it reconnects with Last-Event-ID."""
        if self.stream is not None and not self.detached:
            self.detached = True
            self.channel.finish()

    async def conclude(self, body: bytes, as_stream: bool = False) -> bool:
        """Deliver the final response on the stream, if one was started (or the client asked
        for a stream); False: nothing was sent, so the caller replies with plain JSON."""
        if self.stream is None and not as_stream:
            return False
        await self._emit(body, final=True)
        self._end()
        return True

    async def abandon(self) -> None:
        """A cancelled request gets no response (basic/utilities/cancellation): its stream, or
        an empty one, just ends."""
        if self.stream is None:
            await self._open()
        self._end()

    def _end(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.runtime is not None:
            self.runtime.bound_replay()
        if not self.detached:
            self.channel.finish()

    async def _emit(self, data: bytes, final: bool = False) -> None:
        stream = self.stream or await self._open()
        stream.publish(data, final=final)
        if self.runtime is not None and self.runtime.events.shared:
            # Kept for a replay elsewhere before the client can have seen it.
            await self.runtime.events.settle()
        if not self.detached:
            event_id = stream.event_id(stream.seq) if self.with_ids else None
            await self.channel.send(sse.event(data, event_id))

    async def _open(self) -> EventStream:
        stream = self.runtime.new_stream() if self.runtime else EventStream("r", self.capacity)
        self.stream = stream
        self.channel.start(200, list(sse.HEADERS))
        if self.prime:
            if self.runtime is not None and self.runtime.events.shared:
                await self.runtime.events.settle()
            await self.channel.send(sse.priming(stream.event_id(0), self.retry_ms))
        return stream
