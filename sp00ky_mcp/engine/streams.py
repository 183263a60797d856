"""Event streams behind SSE replies: publish once, follow live, replay after a disconnect.

Each stream keeps its last N events so that a client reconnecting with `Last-Event-ID` gets
what it missed (transports, "Resumability and Redelivery": ids are per-stream cursors and the
server replays only messages of the stream the id belongs to).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio

from .events import CUT, END, EVENT, Entry


@dataclass(frozen=True, slots=True)
class StreamItem:
    seq: int
    data: bytes
    final: bool = False


class EventStream:
    def __init__(self, stream_id: str, capacity: int) -> None:
        self.stream_id = stream_id
        self.items: deque[StreamItem] = deque(maxlen=capacity)
        self.seq = 0
        self.closed = False
        # Sequence numbers after which the HTTP response then following must end.
        self.cuts: list[int] = []
        # Told of each event, cut and end, in order (a shared log keeps them for replay
        # from other replicas).
        self.on_entry: Callable[[Entry], None] | None = None
        self._wake = anyio.Event()

    def event_id(self, seq: int) -> str:
        return f"{self.stream_id}_{seq}"

    def publish(self, data: bytes, final: bool = False) -> None:
        if self.closed:
            return
        self.seq += 1
        self.items.append(StreamItem(self.seq, data, final))
        if self.on_entry is not None:
            self.on_entry(Entry(EVENT, self.seq, data, final))
        self._wakeup()

    def interrupt(self) -> None:
        """End the current HTTP responses following this stream without ending the stream: the
        client reconnects with Last-Event-ID (2025-11-25 transports, SSE polling)."""
        if not self.cuts or self.cuts[-1] != self.seq:
            self.cuts.append(self.seq)
            if self.on_entry is not None:
                self.on_entry(Entry(CUT, self.seq))
        self._wakeup()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.on_entry is not None:
                self.on_entry(Entry(END, self.seq))
            self._wakeup()

    def _wakeup(self) -> None:
        self._wake.set()
        self._wake = anyio.Event()

    async def follow(self, after: int, keepalive: float) -> AsyncIterator[StreamItem | None]:
        """Items past `after`, then live ones until closed or interrupted; None marks a quiet
        interval."""
        start = after
        while True:
            wake = self._wake
            cut = next((c for c in self.cuts if c > start), None)
            limit = self.seq if cut is None else cut
            pending = [item for item in self.items if after < item.seq <= limit]
            for item in pending:
                after = item.seq
                yield item
            if pending:
                continue
            if self.closed or cut is not None:
                return
            with anyio.move_on_after(keepalive) as quiet:
                await wake.wait()
            if quiet.cancelled_caught:
                yield None


MAX_SEQ_DIGITS = 18


def split_event_id(event_id: str) -> tuple[str, int] | None:
    stream_id, sep, seq = event_id.rpartition("_")
    # More digits than any sequence number reaches is no id of ours (and past 4,300 digits
    # `int` refuses them).
    if not sep or not (seq.isascii() and seq.isdigit()) or len(seq) > MAX_SEQ_DIGITS:
        return None
    return stream_id, int(seq)
