"""Quotas shared by every replica on one Redis: a token's rate and its calls in flight are
counted once for all of them, each decision in one atomic script.

Calls in flight are counted against slots each replica leases from Redis, one at a time, in a
hash per token ({replica: slots}), never more than the cap in all: a call takes a slot its
replica already leases without a round trip, and a replica gives back each second the slots
it did not need at its busiest.  A replica refused at the cap asks the others, on the bus, to
give back their idle slots at once, and tries once more, so that a cap is refused only while
calls really hold it.  A replica's slots are dropped by the next lease once its key has
lapsed: a killed replica does not hold them for ever.  While Redis does not answer, each
replica falls back to counting on its own (the quotas of one process), so the stateless era
keeps working; what it claimed that way it releases that way.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from ...engine.errors import SharedStateUnavailable
from ...engine.events import Message
from ...engine.quotas import LocalQuotas, Quotas
from ...engine.tally import Tally
from .batch import ScriptBatch
from .redis import SharedLink

if TYPE_CHECKING:
    from .bus import RedisBus

# How often a replica gives back the slots it leases beyond its busiest moment.
TRIM_SECONDS = 1.0

# Token bucket: hash {t: tokens, s: stamp}; a clock that stepped back refills nothing.
THROTTLE = """
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(redis.call('HGET', KEYS[1], 't'))
local stamp = tonumber(redis.call('HGET', KEYS[1], 's'))
if tokens == nil or stamp == nil then tokens = burst; stamp = now end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate)
  stamp = now
end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""

# Calls in flight: hash {replica: slots leased}; ARGV: replica, cap, prefix of replicas' keys.
LEASE = """
local held = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #held, 2 do
  local replica, count = held[i], tonumber(held[i + 1])
  if replica ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. replica) == 0 then
    redis.call('HDEL', KEYS[1], replica)
  else
    total = total + count
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""

# ARGV: replica, slots given back.
GIVE_BACK = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""

# ARGV: replica, slots it leases (what Redis holds for it is set to that).
SET_LEASED = """
if tonumber(ARGV[2]) > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""


class RedisQuotas(Quotas):
    def __init__(
        self, link: SharedLink, batch: ScriptBatch | None = None, bus: RedisBus | None = None
    ) -> None:
        self.link = link
        self.batch = batch or ScriptBatch(link)
        self.bus = bus
        client = link.client
        self._throttle = client.register_script(THROTTLE)
        self._lease = client.register_script(LEASE)
        self._give_back = client.register_script(GIVE_BACK)
        self._set_leased = client.register_script(SET_LEASED)
        self.fallback = LocalQuotas()
        self._local = Tally()
        # Slots leased from Redis, those of them calls hold, and the most held at once since
        # the last trim, by key.
        self._leased = Tally()
        self._busy = Tally()
        self._peak: dict[str, int] = {}
        # Leases under way, and keys whose count on Redis may differ from ours (an answer
        # lost after Redis acted): set right at the next trim with no lease under way.
        self._leasing = Tally()
        self._asking: dict[str, asyncio.Future[None]] = {}
        self._unsure: set[str] = set()
        link.lost.append(self.lost)
        if bus is not None:
            bus.handlers["spare"] = self._asked

    async def throttle(self, key: str, now: float, rate: float, burst: float) -> float:
        keys = [self.link.key("rate", key)]
        try:
            wait = await self.batch(self._throttle, keys, [now, rate, burst])
        except SharedStateUnavailable:
            return await self.fallback.throttle(key, now, rate, burst)
        return float(wait)

    async def claim(self, key: str, cap: int) -> bool:
        if self._take(key):
            return True
        try:
            if await self._lease_one(key, cap):
                return self._take(key)
            if self.bus is None:
                return False
            await self._ask_back(key)
            return await self._lease_one(key, cap) and self._take(key)
        except SharedStateUnavailable:
            return self._claim_locally(key, cap)

    async def _ask_back(self, key: str) -> None:
        """The other replicas asked to give back their idle slots of `key`: once per key at a
        time, however many calls are refused meanwhile (each would cost every replica)."""
        asking = self._asking.get(key)
        if asking is None:
            assert self.bus is not None
            asking = asyncio.ensure_future(self.bus.publish({"t": "spare", "k": key}, confirm=True))
            self._asking[key] = asking
            asking.add_done_callback(lambda _: self._asking.pop(key, None))
        await asyncio.shield(asking)

    def _take(self, key: str) -> bool:
        """A slot this replica leases and no call holds, taken; False if there is none."""
        busy = self._busy.get(key, 0)
        if busy >= self._leased.get(key, 0):
            return False
        self._busy.add(key)
        self._peak[key] = max(self._peak.get(key, 0), busy + 1)
        return True

    async def _lease_one(self, key: str, cap: int) -> bool:
        keys = [self.link.key("calls", key)]
        args: list[str | int] = [self.link.replica, cap, self.link.key("replica", "")]
        self._leasing.add(key)
        try:
            # A caller gone before the answer came still leased the slot: kept as spare.
            leased = await self.batch(self._lease, keys, args, partial(self._leased_anyway, key))
        except BaseException:
            # Failed, or its caller left: Redis may have leased it all the same.
            self._unsure.add(key)
            raise
        finally:
            self._leasing.remove(key)
        if leased:
            self._leased.add(key)
        return bool(leased)

    def _leased_anyway(self, key: str, got: Any) -> None:
        if got:
            self._leased.add(key)

    def _claim_locally(self, key: str, cap: int) -> bool:
        if self._local.get(key, 0) >= cap:
            return False
        self._local.add(key)
        return True

    async def release(self, key: str) -> None:
        if self._local.get(key, 0):
            self._local.remove(key)
        else:
            self._busy.remove(key)

    async def run(self) -> None:
        while True:
            await anyio.sleep(TRIM_SECONDS)
            await self.trim()

    async def trim(self) -> None:
        """Gives back the slots beyond the most held at once since the last trim, and sets
        right what Redis may hold wrongly for this replica."""
        async with anyio.create_task_group() as tasks:
            for key in set(self._leased) | self._unsure:
                busy = self._busy.get(key, 0)
                spare = max(0, self._leased.get(key, 0) - max(self._peak.pop(key, 0), busy))
                if busy:
                    self._peak[key] = busy
                # Taken off now, before any call can take them, and sent back after.
                self._give(key, -spare)
                if key in self._unsure and not self._leasing.get(key):
                    tasks.start_soon(self._set_right, key, spare, self._leased.get(key, 0))
                elif spare:
                    tasks.start_soon(self._send_back, key, spare)

    async def _set_right(self, key: str, spare: int, leased: int) -> None:
        keys = [self.link.key("calls", key)]
        try:
            await self.batch(self._set_leased, keys, [self.link.replica, leased])
        except SharedStateUnavailable:
            self._give(key, spare)
            return
        self._unsure.discard(key)

    def lost(self) -> None:
        """Redis lost what it held for this replica (restarted, or the replica's key lapsed):
        each lease is set right at the next trim."""
        self._unsure |= set(self._leased)

    async def _asked(self, message: Message) -> None:
        """Another replica is refused at the cap: the slots idle here are given back now."""
        key = message.get("k")
        if isinstance(key, str):
            await self._return(key, self._leased.get(key, 0) - self._busy.get(key, 0))

    async def _return(self, key: str, slots: int) -> None:
        if slots <= 0:
            return
        self._give(key, -slots)  # not to be taken while they go back
        await self._send_back(key, slots)

    async def _send_back(self, key: str, slots: int) -> None:
        """Slots already taken off this replica's count, given back on Redis."""
        try:
            keys = [self.link.key("calls", key)]
            await self.batch(self._give_back, keys, [self.link.replica, slots])
        except SharedStateUnavailable:
            self._give(key, slots)  # still leased: given back at the next trim
            self._unsure.add(key)  # unless Redis took it and the answer was lost

    def _give(self, key: str, slots: int) -> None:
        left = self._leased.get(key, 0) + slots
        if left > 0:
            self._leased[key] = left
        else:
            self._leased.pop(key, None)

    def held(self) -> dict[str, int]:
        both = Tally(self._busy)
        for key, count in self._local.items():
            both[key] = both.get(key, 0) + count
        return dict(both)
