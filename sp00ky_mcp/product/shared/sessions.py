"""Handshake-era sessions on Redis, so that a client's next request may land on any replica:
what the session is (owner, negotiated version, client capabilities and info, state, log
level, subscriptions) is one value per session that expires when the session idles past its
TTL, and two sorted sets by last use bound the sessions of one token and of all tokens, the
least recently used evicted first, as in one process.  Each decision is one atomic script,
timed by Redis's own clock so that replicas' clocks need not agree.

What a replica holds for a session (its event streams, the calls it runs) stays in that
replica; a session ended anywhere is found gone by every replica at its next use, and what a
replica held for it is let go at its next sweep.

A replica keeps the sessions it uses in memory, so that a request costs no round trip to
Redis: the bus tells every replica of a session ended or changed elsewhere, and its sender
waits until each has dropped its copy before it answers, so the client's next request, on
any replica, reads it again.  A copy is trusted only while the bus is sure to hear (see
`RedisBus.hearing`) and for at most `TRUST_SECONDS` since Redis last confirmed it (and never
for more than half the idle TTL, so Redis has not expired it meanwhile); each second, the
sessions used are confirmed, their TTL and order of use renewed, many to a pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson

from ...engine.errors import SharedStateUnavailable
from ...engine.sessions import Mark, Session, SessionState, SessionStore
from ...engine.tally import Tally
from .batch import ScriptBatch
from .bus import TRUST_SECONDS
from .redis import SharedLink

CLOCK = """
-- A strictly increasing clock in microseconds: Redis's own time, moved on by one past the
-- last reading when two uses fall within one microsecond, so the order of uses is kept.
local function now(prefix)
  local t = redis.call('TIME')
  local us = t[1] * 1000000 + t[2]
  local last = tonumber(redis.call('GET', prefix .. 'clock') or '0')
  if us <= last then us = last + 1 end
  redis.call('SET', prefix .. 'clock', us)
  return us
end
"""

# ARGV: id, value, ttl ms, max per owner, max in all, key prefix.  KEYS: value, owner's, all.
ADD = (
    CLOCK
    + """
local now = now(ARGV[6])
local cutoff = now - tonumber(ARGV[3]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cutoff)
local evicted = {}
local function evict(set, most)
  while redis.call('ZCARD', set) >= most do
    local id = redis.call('ZPOPMIN', set)[1]
    local value = redis.call('GET', ARGV[6] .. 's:' .. id)
    redis.call('DEL', ARGV[6] .. 's:' .. id)
    redis.call('ZREM', KEYS[3], id)
    if value then
      redis.call('ZREM', ARGV[6] .. 'so:' .. cjson.decode(value)['k'], id)
    end
    table.insert(evicted, id)
  end
end
evict(KEYS[2], tonumber(ARGV[4]))
evict(KEYS[3], tonumber(ARGV[5]))
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
return evicted
"""
)

# ARGV: id, ttl ms, key prefix.  KEYS: value, all.
GET = (
    CLOCK
    + """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local now = now(ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', ARGV[3] .. 'so:' .. cjson.decode(value)['k'], now, ARGV[1])
return value
"""
)

# ARGV: id, key prefix.  KEYS: value, all.
REMOVE = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', ARGV[2] .. 'so:' .. cjson.decode(value)['k'], ARGV[1])
return 1
"""

# ARGV: key prefix.  KEYS: owner's, all.
REMOVE_OWNER = """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. 's:' .. id)
  redis.call('ZREM', KEYS[2], id)
end
redis.call('DEL', KEYS[1])
return ids
"""


@dataclass(slots=True)
class _Copy:
    session: Session
    epoch: int
    confirmed: float


def never() -> int | None:
    return None


class RedisSessions(SessionStore):
    def __init__(
        self,
        link: SharedLink,
        max_sessions: int,
        max_per_owner: int,
        idle_ttl: float,
        on_end: Callable[[str], None] = lambda session_id: None,
        batch: ScriptBatch | None = None,
        hearing: Callable[[], int | None] = never,
    ) -> None:
        self.link = link
        self.batch = batch or ScriptBatch(link)
        self.max_sessions = max_sessions
        self.max_per_owner = max_per_owner
        self.ttl_ms = max(1, int(idle_ttl * 1000))
        self.on_end = on_end
        # The bus's epoch while it hears every message (None: copies are not trusted).
        self.hearing = hearing
        self.trust = min(TRUST_SECONDS, idle_ttl / 2)
        self._copies: dict[str, _Copy] = {}
        self._used: set[str] = set()
        # Reads under way, by session id, and how often each such id was dropped meanwhile:
        # a read that saw a drop of its session (it may have been changed) is not kept.
        self._reading = Tally()
        self._drops: dict[str, int] = {}
        client = link.client
        self._add = client.register_script(ADD)
        self._get = client.register_script(GET)
        self._remove = client.register_script(REMOVE)
        self._remove_owner = client.register_script(REMOVE_OWNER)

    def _value_key(self, session_id: str) -> str:
        return self.link.key("s", session_id)

    def _owner_key(self, owner: str | None) -> str:
        return self.link.key("so", owner or "")

    @property
    def _all_key(self) -> str:
        return self.link.key("sa")

    async def add(self, session: Session) -> None:
        keys = [self._value_key(session.id), self._owner_key(session.owner), self._all_key]
        args: list[str | int | bytes] = [
            session.id,
            encode(session),
            self.ttl_ms,
            self.max_per_owner,
            self.max_sessions,
            self.link.prefix,
        ]
        read = self._begin_read(session.id)
        try:
            evicted = await self.link.run(lambda c: self._add(keys, args))
            self._keep(session, time.monotonic(), read)
        finally:
            self._end_read(session.id)
        for session_id in evicted:
            self._drop(session_id.decode())
            self.on_end(session_id.decode())

    async def get(self, session_id: str, now: float) -> Session | None:
        copy = self._copies.get(session_id)
        if copy is not None and self._trusted(copy, now):
            self._used.add(session_id)
            copy.session.last_seen = now
            return copy.session
        keys = [self._value_key(session_id), self._all_key]
        args: list[str | int] = [session_id, self.ttl_ms, self.link.prefix]
        read = self._begin_read(session_id)
        try:
            value = await self.batch(self._get, keys, args)
            if value is None:
                self._drop(session_id)
                return None
            session = decode(session_id, value)
            self._keep(session, now, read)
            return session
        finally:
            self._end_read(session_id)

    def _trusted(self, copy: _Copy, now: float) -> bool:
        return copy.epoch == self.hearing() and now - copy.confirmed < self.trust

    def _begin_read(self, session_id: str) -> tuple[int, int | None]:
        """What `_keep` compares against once the read is back: the drops of the session so
        far, and the bus's subscription the read began under."""
        self._reading.add(session_id)
        return self._drops.get(session_id, 0), self.hearing()

    def _end_read(self, session_id: str) -> None:
        self._reading.remove(session_id)
        if session_id not in self._reading:
            self._drops.pop(session_id, None)

    def _keep(self, session: Session, now: float, read: tuple[int, int | None]) -> None:
        """Kept as read at `now`, unless the session was dropped since the read began (it
        may have changed meanwhile), or the bus may have missed what ends it: it does not
        hear now, or heard under another subscription when the read began."""
        drops, epoch = read
        if epoch is None or epoch != self.hearing() or self._drops.get(session.id, 0) != drops:
            return
        if session.id not in self._copies and len(self._copies) >= self.max_sessions:
            del self._copies[next(iter(self._copies))]
        self._copies[session.id] = _Copy(session, epoch, now)

    def _drop(self, session_id: str) -> None:
        self._copies.pop(session_id, None)
        if session_id in self._reading:
            self._drops[session_id] = self._drops.get(session_id, 0) + 1

    def forget(self, session_id: str) -> None:
        self._drop(session_id)

    async def save(self, session: Session, before: Mark) -> None:
        """What the request changed, applied to the session as Redis holds it now (read and
        written under WATCH, again if it changed meanwhile): a change another replica made at
        the same time (another field, another subscription) is kept, and a session ended
        meanwhile is not brought back."""
        key, after = self._value_key(session.id), session.mark()

        async def change(pipe: Any) -> None:
            value = await pipe.get(key)
            if value is not None:
                pipe.multi()
                pipe.set(key, changed(value, before, after), keepttl=True)

        try:
            await self.link.run(lambda c: c.transaction(change, key))
        finally:
            # Read again at the next use: a read of this replica's that raced the write may
            # hold what was there before, and a failed write leaves this copy unlike Redis.
            self._drop(session.id)

    async def remove(self, session_id: str) -> bool:
        self._drop(session_id)
        keys = [self._value_key(session_id), self._all_key]
        try:
            removed = await self.link.run(
                lambda c: self._remove(keys, [session_id, self.link.prefix])
            )
        finally:
            self._drop(session_id)  # a read of this replica's that raced the removal
        if removed:
            self.on_end(session_id)
        return bool(removed)

    async def remove_owner(self, owner: str) -> None:
        for copy in list(self._copies.values()):
            if copy.session.owner == owner:
                self._drop(copy.session.id)
        keys = [self._owner_key(owner), self._all_key]
        ids = await self.link.run(lambda c: self._remove_owner(keys, [self.link.prefix]))
        for session_id in ids:
            self._drop(session_id.decode())
            self.on_end(session_id.decode())

    async def run(self) -> None:
        """Confirms the copies used since the last time, twice per trust period."""
        while True:
            await anyio.sleep(self.trust / 2)
            await self.confirm()

    async def confirm(self) -> None:
        """Renews on Redis the sessions used from copies (their TTL and order of use) and
        confirms the copies; a session gone or changed there is dropped, to be read again."""
        used, self._used = self._used, set()
        copies = [copy for copy in map(self._copies.get, used) if copy is not None]
        now = time.monotonic()
        try:
            async with anyio.create_task_group() as tasks:
                for copy in copies:
                    tasks.start_soon(self._confirm_one, copy, now)
        except* SharedStateUnavailable:
            self._copies.clear()

    async def _confirm_one(self, copy: _Copy, now: float) -> None:
        session_id = copy.session.id
        keys = [self._value_key(session_id), self._all_key]
        value = await self.batch(self._get, keys, [session_id, self.ttl_ms, self.link.prefix])
        if value is None or changed_there(copy.session, value):
            self._drop(session_id)
        elif self._copies.get(session_id) is copy:  # not dropped (nor replaced) meanwhile
            copy.confirmed = now

    async def sweep(self, now: float, held: list[str]) -> list[str]:
        """Redis expires idle sessions itself; of `held`, those no longer there."""
        for session_id, copy in list(self._copies.items()):
            if now - copy.confirmed >= self.trust:
                del self._copies[session_id]
        if not held:
            return []
        keys = [self._value_key(session_id) for session_id in held]

        async def exist(client: Any) -> list[int]:
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.exists(key)
                found: list[int] = await pipe.execute()
            return found

        found = await self.link.run(exist)
        return [session_id for session_id, there in zip(held, found, strict=True) if not there]


def encode(session: Session) -> bytes:
    return orjson.dumps(
        {
            "k": session.owner or "",
            "o": session.owner,
            "v": session.protocol_version,
            "c": session.client_capabilities,
            "i": session.client_info,
            "s": session.state.value,
            "l": session.log_level,
            "u": sorted(session.subscriptions),
        }
    )


def changed(value: bytes, before: Mark, after: Mark) -> bytes:
    """The stored session `value` with what changed from `before` to `after`, and only that."""
    fields = orjson.loads(value)
    if after[0] != before[0]:
        fields["s"] = after[0].value
    if after[1] != before[1]:
        fields["l"] = after[1]
    fields["u"] = sorted((set(fields["u"]) | (after[2] - before[2])) - (before[2] - after[2]))
    return orjson.dumps(fields)


def changed_there(session: Session, value: bytes) -> bool:
    """Whether what requests may change differs on Redis from this copy."""
    fields = orjson.loads(value)
    return (fields["s"], fields["l"], set(fields["u"])) != (
        session.state.value,
        session.log_level,
        session.subscriptions,
    )


def decode(session_id: str, value: bytes) -> Session:
    fields = orjson.loads(value)
    return Session(
        id=session_id,
        owner=fields["o"],
        protocol_version=fields["v"],
        client_capabilities=fields["c"],
        client_info=fields["i"],
        last_seen=time.monotonic(),
        state=SessionState(fields["s"]),
        log_level=fields["l"],
        subscriptions=set(fields["u"]),
    )
