"""Quotas shared by every replica on one Redis: a token's rate and its calls in flight are
counted once for all of them, each decision in one atomic script.

Calls in flight are counted per replica, in a hash per token, and a replica's count is
dropped by the next claim once the replica's key has lapsed: a killed replica does not hold
its calls for ever.  While Redis does not answer, each replica falls back to counting on
its own (the quotas of one process), so the stateless era keeps working; what it claimed
that way it releases that way.
"""

from __future__ import annotations

from typing import Any

import anyio

from ...engine.errors import SharedStateUnavailable
from ...engine.quotas import LocalQuotas, Quotas
from ...engine.tally import Tally
from .batch import ScriptBatch
from .redis import SharedLink

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

# Calls in flight: hash {replica: count}; ARGV: replica, cap, prefix of replicas' keys.
CLAIM = """
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

RELEASE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""


class RedisQuotas(Quotas):
    def __init__(self, link: SharedLink, batch: ScriptBatch | None = None) -> None:
        self.link = link
        self.batch = batch or ScriptBatch(link)
        client = link.client
        self._throttle = client.register_script(THROTTLE)
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)
        self.fallback = LocalQuotas()
        self._local = Tally()
        self._held = Tally()
        # Releases Redis did not take: made again before the next claim.
        self._owed = Tally()

    async def throttle(self, key: str, now: float, rate: float, burst: float) -> float:
        keys = [self.link.key("rate", key)]
        try:
            wait = await self.batch(self._throttle, keys, [now, rate, burst])
        except SharedStateUnavailable:
            return await self.fallback.throttle(key, now, rate, burst)
        return float(wait)

    async def claim(self, key: str, cap: int) -> bool:
        if self._owed:
            await self._repay()
        keys = [self.link.key("calls", key)]
        args: list[str | int] = [self.link.replica, cap, self.link.key("replica", "")]
        try:
            # A caller gone before the answer came leaves a slot taken: it is given back.
            claimed = await self.batch(
                self._claim, keys, args, lambda taken: self._abandoned(key, taken)
            )
        except SharedStateUnavailable:
            return self._claim_locally(key, cap)
        if claimed:
            self._held.add(key)
        return bool(claimed)

    def _abandoned(self, key: str, taken: Any) -> None:
        if taken:
            self._owed.add(key)

    def _claim_locally(self, key: str, cap: int) -> bool:
        if self._local.get(key, 0) >= cap:
            return False
        self._local.add(key)
        return True

    async def release(self, key: str) -> None:
        if self._local.get(key, 0):
            self._local.remove(key)
            return
        self._held.remove(key)
        with anyio.CancelScope(shield=True):
            released = await self._release_shared(key)
        if not released:
            self._owed.add(key)

    async def _release_shared(self, key: str) -> bool:
        keys = [self.link.key("calls", key)]
        try:
            await self.batch(self._release, keys, [self.link.replica])
        except SharedStateUnavailable:
            return False
        return True

    async def _repay(self) -> None:
        for key in list(self._owed):
            if not await self._release_shared(key):
                return
            self._owed.remove(key)

    def held(self) -> dict[str, int]:
        both = Tally(self._held)
        for key, count in self._local.items():
            both[key] = both.get(key, 0) + count
        return dict(both)
