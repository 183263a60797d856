"""The IO-side companions of a handshake-era session: its event streams, the requests it is
running (so `notifications/cancelled` can stop them) and the server-to-client requests it
awaits answers to."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from typing import Any

import anyio

from . import jsonrpc
from .errors import ToolError
from .streams import EventStream

MAX_RETAINED_STREAMS = 32


class Waiter:
    __slots__ = ("event", "response")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.response: jsonrpc.Response | None = None


class SessionRuntime:
    def __init__(self, replay_capacity: int) -> None:
        self.replay_capacity = replay_capacity
        self.streams: OrderedDict[str, EventStream] = OrderedDict()
        self.standalone: EventStream | None = None
        self.standalone_listeners = 0
        self.running: dict[jsonrpc.RequestId, anyio.CancelScope] = {}
        self.pending: dict[jsonrpc.RequestId, Waiter] = {}
        self._next_id = 0

    def new_stream(self) -> EventStream:
        stream = EventStream(secrets.token_hex(8), self.replay_capacity)
        self.streams[stream.stream_id] = stream
        while len(self.streams) > MAX_RETAINED_STREAMS:
            _, oldest = self.streams.popitem(last=False)
            oldest.close()
        return stream

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
        self._next_id += 1
        return f"s-{self._next_id}"

    def resolve(self, response: jsonrpc.Response) -> bool:
        waiter = self.pending.get(response.id)
        if waiter is None:
            return False
        waiter.response = response
        waiter.event.set()
        return True

    def cancel(self, request_id: Any) -> None:
        """Cancellation is advisory (basic/utilities/cancellation): an id we do not know, or
        one that is not a valid id at all, is ignored."""
        if isinstance(request_id, bool) or not isinstance(request_id, str | int):
            return
        scope = self.running.get(request_id)
        if scope is not None:
            scope.cancel()

    def close(self) -> None:
        for scope in self.running.values():
            scope.cancel()
        for stream in self.streams.values():
            stream.close()
        for waiter in self.pending.values():
            waiter.event.set()


class StreamPeer:
    """Delivers a handler's notifications and requests on its reply stream (transports:
    messages related to a request go on that request's SSE stream)."""

    def __init__(self, stream: EventStream, runtime: SessionRuntime | None) -> None:
        self.stream = stream
        self.runtime = runtime

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        self.stream.publish(jsonrpc.encode_notification(method, params))

    def interrupt(self) -> None:
        self.stream.interrupt()

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        if self.runtime is None:
            raise ToolError(f"This connection cannot carry a '{method}' request to the client.")
        request_id = self.runtime.next_request_id()
        waiter = self.runtime.pending[request_id] = Waiter()
        try:
            self.stream.publish(jsonrpc.encode_request(request_id, method, params))
            await waiter.event.wait()
        finally:
            self.runtime.pending.pop(request_id, None)
        return answer_of(method, waiter.response)


def answer_of(method: str, response: jsonrpc.Response | None) -> Any:
    if response is None:
        raise ToolError(f"The session ended before the client answered '{method}'.")
    if response.error is not None:
        reason = response.error.get("message", "no reason given")
        raise ToolError(f"The client refused the '{method}' request: {reason}")
    return response.result
