"""Waiting for what another replica writes to a Redis stream, for any number of followers,
on one connection.

A follower (a client resuming a stream that another replica writes) waits for the stream's
next entry.  A blocking XREAD holds its connection while it waits, so one XREAD per follower
would let enough followers (of a few tokens) take every connection a replica has for waiting,
and turn every other client's resumption away.  Here one reader names every stream a follower
waits on in a single XREAD, and wakes the followers of the streams it returns; a follower
costs a key in that read, never a connection.  A follower that arrives while the read is in
flight writes to this replica's wake stream, which the read also names, so that it starts
over with the newcomer at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ...engine.errors import SharedStateUnavailable
from .redis import ALIVE_MS, SharedLink

# How long one read blocks on the server; followers wait as long as they choose, each.
BLOCK_SECONDS = 5.0


@dataclass(eq=False)
class _Follower:
    key: str
    last: str  # the id of the last entry it has
    woken: anyio.Event = field(default_factory=anyio.Event)
    failed: bool = False


def _order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def earliest(followers: Iterable[_Follower]) -> str:
    """The smallest last id of followers of one stream: the read returns anything past it
    (a follower further on then finds nothing new past its own, and waits again)."""
    return min((f.last for f in followers), key=_order)


class StreamWatch:
    def __init__(self, link: SharedLink) -> None:
        self.link = link
        self.wake_key = link.key("wake", link.replica)
        self._followers: dict[str, list[_Follower]] = {}
        self._arrived = anyio.Event()
        # The streams the read in flight names, each from the id it reads past (None: no
        # read in flight), and whether it has been told to start over.
        self._reading: dict[str, str] | None = None
        self._waking = False
        # The last entry of the wake stream seen: a read names it from there, so that a wake
        # written before the read reached Redis is found all the same.
        self._woken_at = "0-0"

    @property
    def reading(self) -> frozenset[str] | None:
        """The streams the read in flight names (None: none in flight)."""
        return None if self._reading is None else frozenset(self._reading)

    async def wait(self, key: str, last: str, seconds: float) -> bool:
        """Whether an entry past `last` came to stream `key` within `seconds`."""
        follower = _Follower(key, last)
        self._followers.setdefault(key, []).append(follower)
        try:
            await self._include(key, last)
            with anyio.move_on_after(seconds):
                await follower.woken.wait()
        finally:
            self._forget(follower)
        if follower.failed:
            raise SharedStateUnavailable()
        return follower.woken.is_set()

    async def _include(self, key: str, last: str) -> None:
        self._arrived.set()
        if self._reading is None or self._waking or self._covers(key, last):
            return  # the next read names it, or the one in flight does
        self._waking = True
        try:
            await self.link.run(self._wake)
        except BaseException:
            self._waking = False  # another newcomer may try
            raise

    def _covers(self, key: str, last: str) -> bool:
        """Whether the read in flight would return what comes to `key` past `last`."""
        assert self._reading is not None
        reading = self._reading.get(key)
        return reading is not None and _order(reading) <= _order(last)

    async def _wake(self, client: Any) -> None:
        async with client.pipeline(transaction=False) as pipe:
            pipe.xadd(self.wake_key, {"w": b"1"}, maxlen=1)
            pipe.pexpire(self.wake_key, ALIVE_MS)
            await pipe.execute()

    def _forget(self, follower: _Follower) -> None:
        followers = self._followers.get(follower.key)
        if followers is not None and follower in followers:
            followers.remove(follower)
            if not followers:
                del self._followers[follower.key]

    async def run(self) -> None:
        """The reader, for as long as the server serves."""
        while True:
            if not self._followers:
                self._arrived = anyio.Event()
                await self._arrived.wait()
            await self._read_once()

    async def _read_once(self) -> None:
        streams = {key: earliest(followers) for key, followers in self._followers.items()}
        streams[self.wake_key] = self._woken_at
        self._reading, self._waking = streams, False
        block = int(BLOCK_SECONDS * 1000)
        try:
            # One entry a stream is enough to know that something came.
            found = await self.link.run_blocking(
                lambda c: c.xread(streams, count=1, block=block), BLOCK_SECONDS
            )
        except SharedStateUnavailable:
            self._fail_all()
            # Redis is taken as broken for a moment: followers arriving meanwhile fail at once.
            return
        finally:
            self._reading = None
        for stream, entries in found or ():
            key = stream.decode()
            if key == self.wake_key:
                self._woken_at = entries[-1][0].decode()
            self._wake_followers(key)

    def _wake_followers(self, key: str) -> None:
        for follower in self._followers.pop(key, ()):
            follower.woken.set()

    def _fail_all(self) -> None:
        followers, self._followers = self._followers, {}
        for follower in (f for group in followers.values() for f in group):
            follower.failed = True
            follower.woken.set()
