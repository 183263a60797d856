"""Quotas per key (a token): a rate of requests, as a token bucket, and a cap on what the key
holds at once (tool calls in flight).  A port: `LocalQuotas` serves one process; a shared
implementation (Redis) gives every replica behind a load balancer the same answers, so that
N replicas do not multiply a token's allowance by N.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass

from .tally import Tally


class Quotas(ABC):
    @abstractmethod
    async def throttle(self, key: str, now: float, rate: float, burst: float) -> float:
        """Takes one request from `key`'s allowance (`burst` at once, refilled at `rate` per
        second) at the time `now` (the caller's clock: replicas keep theirs in step): 0 when
        allowed, else the seconds until the next one is."""

    @abstractmethod
    async def claim(self, key: str, cap: int) -> bool:
        """One more held by `key`, unless it already holds `cap`."""

    @abstractmethod
    async def release(self, key: str) -> None:
        """One fewer held by `key` (once per successful claim).  Called as a call ends, also
        when it was cancelled: an implementation that waits on IO shields that wait."""

    def held(self) -> dict[str, int]:
        """What this process holds, by key (for tests and shutdown)."""
        return {}

    async def run(self) -> None:
        """Background upkeep for as long as the server serves (none in one process)."""
        return None

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class Bucket:
    """A token bucket: `capacity` requests at once, refilled at `rate` per second."""

    tokens: float
    stamp: float
    rate: float = 0.0
    capacity: float = 0.0

    def take(self, now: float, rate: float, capacity: float) -> float:
        """Take one; returns 0 when allowed, else the seconds until one is available."""
        self.rate, self.capacity = rate, capacity
        # A clock that stepped back refills nothing (and takes nothing away).
        self.tokens = min(capacity, self.tokens + max(0.0, now - self.stamp) * rate)
        self.stamp = max(self.stamp, now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate

    def full(self, now: float) -> bool:
        """Refilled by `now`: no different from a bucket never used."""
        return self.tokens + max(0.0, now - self.stamp) * self.rate >= self.capacity


# Buckets kept before the full ones are dropped; then twice as many as remain.
SWEEP_AT = 4096
# Buckets looked at for each new one past SWEEP_AT, the longest unchecked first: the map is
# swept a step at a time, never in one pass that would hold the event loop.
SWEPT_PER_NEW = 2


class LocalQuotas(Quotas):
    """One process's quotas, in memory."""

    def __init__(self) -> None:
        # In the order they were last looked at by the sweep (an OrderedDict: taking from
        # the front of a plain dict slows as the front fills with holes).
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._held = Tally()

    async def throttle(self, key: str, now: float, rate: float, burst: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= SWEEP_AT:
                self._sweep(now)
            bucket = self._buckets[key] = Bucket(burst, now)
        return bucket.take(now, rate, burst)

    def _sweep(self, now: float) -> None:
        """Drops the longest-unchecked buckets that have refilled and sends the others to the
        back, so that keys seen once (an address, an email tried) do not stay for the life of
        the process: with two looked at for each one added, every bucket is looked at again
        before the map has doubled."""
        buckets = self._buckets
        for _ in range(SWEPT_PER_NEW):
            key, bucket = buckets.popitem(last=False)
            if not bucket.full(now):
                buckets[key] = bucket

    def buckets(self) -> int:
        return len(self._buckets)

    async def claim(self, key: str, cap: int) -> bool:
        if self._held.get(key, 0) >= cap:
            return False
        self._held.add(key)
        return True

    async def release(self, key: str) -> None:
        self._held.remove(key)

    def held(self) -> dict[str, int]:
        return dict(self._held)
