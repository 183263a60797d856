"""The event streams of handshake-era sessions, kept on Redis so that a client whose stream
broke (its replica killed, its connection cut) resumes it with Last-Event-ID on any replica.

Each stream is a Redis stream whose entry ids are `<seq>-<order>` (its opening, an event, a
cut, the end),
bounded by length (the replay buffer) and by age (the session's idle time), with the replica
that writes it named beside it.  Entries are written in order by one task per replica, many
to a round trip; an event is kept before it is sent to the client (`settle`), so whatever a
client saw is there to be replayed.  A follower on another replica reads what is kept, then
waits for more; it ends the stream at its end or cut, or once the replica writing it has died
(nothing more can come).  A session keeps at most `MAX_RETAINED_STREAMS` streams; the oldest
go first.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import anyio

from ...engine.errors import SharedStateUnavailable
from ...engine.events import CUT, END, EVENT, OPEN, Entry, EventLog
from ...engine.runtime import MAX_RETAINED_STREAMS
from .redis import SharedLink
from .watch import StreamWatch

log = logging.getLogger("sp00ky_mcp.shared")
# Entry ids are `<seq>-<order>`: Redis wants each id above the last, and at one sequence number
# the opening (only at 0) comes before the event, the event before its cut, the cut before the
# end.
ORDER = {OPEN: 1, EVENT: 2, CUT: 3, END: 4}
KIND = {order: kind for kind, order in ORDER.items()}
# Entries written per round trip, at most.
BATCH = 256
# A follower reads this many entries at a time.
PAGE = 128
# What can name a stream of a session: anything with a colon names another key beside it.
_STREAM_ID = re.compile(r"[^:]+")

# KEYS: stream, owner, session's streams.  ARGV: id, data, final, length, ttl ms, replica,
# stream id, most streams, key prefix of the session's streams.
APPEND = """
local fresh = redis.call('EXISTS', KEYS[2]) == 0
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], ARGV[1], 'd', ARGV[2], 'f', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], ARGV[6], 'PX', ARGV[5])
if fresh then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[3], t[1] * 1000000 + t[2], ARGV[7])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
  while redis.call('ZCARD', KEYS[3]) > tonumber(ARGV[8]) do
    local old = redis.call('ZPOPMIN', KEYS[3])[1]
    redis.call('DEL', ARGV[9] .. old, ARGV[9] .. old .. ':owner')
  end
end
return 1
"""


class RedisEventLog(EventLog):
    shared = True

    def __init__(self, link: SharedLink, capacity: int, idle_ttl: float) -> None:
        self.link = link
        self.capacity = capacity
        self.ttl_ms = max(1, int(idle_ttl * 1000))
        self._append = link.client.register_script(APPEND)
        self._queue: deque[tuple[str, str, Entry]] = deque()
        self._recorded = 0
        self._written = 0
        self._failed = 0
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self.watch = StreamWatch(link)

    def _stream_key(self, session_id: str, stream_id: str) -> str:
        return self.link.key("ev", session_id, stream_id)

    def record(self, session_id: str, stream_id: str, entry: Entry) -> None:
        self._queue.append((session_id, stream_id, entry))
        self._recorded += 1
        self._wake.set()

    async def settle(self) -> bool:
        goal = self._recorded
        failed = self._failed
        while self._written < goal:
            await self._progress.wait()
        return self._failed == failed

    async def run(self) -> None:
        """The writer, and the reader that followers wait on."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.watch.run)
            await self._write_all()

    async def _write_all(self) -> None:
        """Everything recorded, in order, many entries to a round trip."""
        while True:
            if not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            await self._write(batch)
            self._written += len(batch)
            self._progress.set()
            self._progress = anyio.Event()

    async def _write(self, batch: list[tuple[str, str, Entry]]) -> None:
        async def send(client: Any) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for session_id, stream_id, entry in batch:
                    await self._queue_append(pipe, session_id, stream_id, entry)
                await pipe.execute()

        try:
            with anyio.CancelScope(shield=True):
                await self.link.run(send)
        except SharedStateUnavailable:
            self._failed += 1
        except Exception:
            # The writer must outlive any one batch: those events are lost to other
            # replicas, not to the clients they were sent to.
            log.exception("events could not be kept for replay")
            self._failed += 1

    async def _queue_append(self, pipe: Any, session_id: str, stream_id: str, entry: Entry) -> None:
        key = self._stream_key(session_id, stream_id)
        streams_prefix = self.link.key("ev", session_id, "")
        await self._append(
            keys=[key, key + ":owner", self.link.key("evs", session_id)],
            args=[
                f"{entry.seq}-{ORDER[entry.kind]}",
                entry.data,
                int(entry.final),
                self.capacity,
                self.ttl_ms,
                self.link.replica,
                stream_id,
                MAX_RETAINED_STREAMS,
                streams_prefix,
            ],
            client=pipe,
        )

    async def exists(self, session_id: str, stream_id: str) -> bool:
        if not _STREAM_ID.fullmatch(stream_id):
            # "<id>:owner" would name the key beside a stream, and reading that as a stream
            # is an error that takes Redis for broken.
            return False
        key = self._stream_key(session_id, stream_id)
        found: int = await self.link.run(lambda c: c.exists(key))
        return bool(found)

    async def follow(
        self, session_id: str, stream_id: str, after: int, keepalive: float
    ) -> AsyncIterator[Entry | None]:
        key = self._stream_key(session_id, stream_id)
        # Past the event `after` and its cut: a response cut there already ended.
        last = f"{after}-{ORDER[CUT]}"
        while True:
            page = await self._page(key, last)
            for entry_id, fields in page:
                last = entry_id.decode()
                entry = _entry(last, fields)
                if entry.kind == OPEN:
                    continue
                if entry.kind != EVENT:
                    return
                yield entry
                if entry.final:
                    return
            if page:
                continue
            if not await self._wait(key, last, keepalive):
                if not await self._writer_alive(key):
                    return
                yield None

    async def _page(self, key: str, last: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """The entries past `last`, a page of them."""
        found: list[tuple[bytes, dict[bytes, bytes]]] = await self.link.run(
            lambda c: c.xrange(key, f"({last}", "+", count=PAGE)
        )
        return found

    async def _wait(self, key: str, last: str, keepalive: float) -> bool:
        """Whether an entry past `last` came within `keepalive` seconds."""
        return await self.watch.wait(key, last, keepalive)

    async def _writer_alive(self, key: str) -> bool:
        async def alive(client: Any) -> bool:
            owner = await client.get(key + ":owner")
            if owner is None:
                return False
            return bool(await client.exists(self.link.key("replica", owner.decode())))

        return await self.link.run(alive)


def _entry(entry_id: str, fields: dict[bytes, bytes]) -> Entry:
    seq, _, order = entry_id.partition("-")
    kind = KIND[int(order)]
    return Entry(kind, int(seq), fields.get(b"d", b""), fields.get(b"f") == b"1")


__all__ = ["CUT", "END", "EVENT", "RedisEventLog"]
