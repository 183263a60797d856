"""The link to Redis that replicas share state through (`--redis-url`): one bounded pool of
connections, short timeouts, no hidden retries, and a breaker that, once Redis failed to
answer, fails the calls that need it at once for a second instead of letting every request
wait out a timeout.  Each replica also keeps a key alive for as long as it runs, so that what
it holds (its calls in flight) is let go by the others when it dies.

Scripts touch keys beyond those they declare: a single Redis server (or one primary with its
replicas), not Redis Cluster.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ...engine.errors import SharedStateUnavailable
from ..credentials import shown_url
from . import BREAK_SECONDS

try:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - only without the [redis] extra
    Redis = None  # type: ignore[assignment,misc]

log = logging.getLogger("sp00ky_mcp.shared")
T = TypeVar("T")
PREFIX = "sp00ky:"
TIMEOUT = 1.0
POOL_SIZE = 64
# Connections that wait on the server: the bus's subscription and the stream watch's read.
WAITING_POOL_SIZE = 4
# A replica's key lives this long; it is renewed three times as often.
ALIVE_MS = 15_000
NO_EXTRA = (
    "Sharing state on Redis needs the redis package: pip install 'sp00ky-mcp[redis]', "
    "or leave out --redis-url to keep it in this process."
)


class SharedLink:
    def __init__(self, url: str, prefix: str = PREFIX, pause: float = BREAK_SECONDS) -> None:
        if Redis is None:
            raise RuntimeError(NO_EXTRA)
        self.url = url
        self.prefix = prefix
        self.replica = secrets.token_hex(8)
        self.pool = pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self.client = Redis(connection_pool=pool)
        # Reads that wait for what another replica writes hold their connection while they
        # wait: a pool of their own, so they never starve the rest.
        self.waiting_pool = BlockingConnectionPool.from_url(
            url,
            max_connections=WAITING_POOL_SIZE,
            timeout=TIMEOUT,
            # A waiting read is bounded by `run_blocking` (its wait and TIMEOUT more), not by
            # the client library's default socket timeout, which would cut it short.
            socket_timeout=None,
            socket_connect_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self.waiting = Redis(connection_pool=self.waiting_pool)
        # After a failure, how long calls fail at once before Redis is tried again.
        self.pause = pause
        self._broken_until = 0.0
        # Told when Redis lost what it held for this replica (see `keep_alive`).
        self.lost: list[Callable[[], None]] = []
        self._renewed = False
        # Told how long each operation took and whether it failed (the server's metrics).
        self.observe: Callable[[float, bool], None] = _unobserved

    @property
    def describe(self) -> str:
        return public_url(self.url)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def alive_key(self) -> str:
        return self.key("replica", self.replica)

    async def run(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """`call(client)`, or SharedStateUnavailable when Redis does not answer."""
        if time.monotonic() < self._broken_until:
            raise SharedStateUnavailable()
        started, ok = time.perf_counter(), False
        try:
            result = await call(self.client)
            ok = True
            return result
        except (RedisError, OSError, TimeoutError) as exc:
            self._break(exc)
            raise SharedStateUnavailable() from None
        finally:
            self.observe(time.perf_counter() - started, ok)

    async def run_blocking(self, call: Callable[[Any], Awaitable[T]], wait: float) -> T:
        """`call(client)` on a connection for waiting reads, which may block up to `wait`
        seconds on the server; SharedStateUnavailable when Redis does not answer."""
        if time.monotonic() < self._broken_until:
            raise SharedStateUnavailable()
        try:
            with anyio.fail_after(wait + TIMEOUT):
                return await call(self.waiting)
        except (RedisError, OSError, TimeoutError) as exc:
            # Every waiting connection taken is this request's refusal, not Redis failing.
            if not _pool_exhausted(exc):
                self._break(exc)
            raise SharedStateUnavailable() from None

    def _break(self, exc: BaseException) -> None:
        if time.monotonic() >= self._broken_until:
            log.warning("Redis at %s did not answer: %s", self.describe, exc)
        self._broken_until = time.monotonic() + self.pause

    async def ping(self) -> None:
        """Raises SharedStateUnavailable unless Redis answers (at start and by health)."""
        await self.run(lambda client: client.ping())

    async def keep_alive(self) -> None:
        """Renews this replica's key for as long as the server runs."""
        while True:
            # A failure is said in the log once; the next renewal tries again.
            with contextlib.suppress(SharedStateUnavailable):
                await self.renew()
            await anyio.sleep(ALIVE_MS / 3000)

    async def renew(self) -> None:
        """Renews this replica's key.  A key found gone after the first renewal (Redis
        restarted empty, or the replica was cut off for longer than its key lives) means
        what this replica holds there may be gone too: `lost` is told."""
        before = await self.run(lambda c: c.set(self.alive_key, b"1", px=ALIVE_MS, get=True))
        if before is None and self._renewed:
            for lost in self.lost:
                lost()
        self._renewed = True

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            # Gone anyway when its time runs out.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self.client.delete(self.alive_key)
            await self.client.aclose()
            await self.waiting.aclose()
            # A pool given to a client is the giver's to close.
            await self.pool.disconnect()
            await self.waiting_pool.disconnect()


def _unobserved(seconds: float, ok: bool) -> None:
    return None


def _pool_exhausted(exc: BaseException) -> bool:
    return "No connection available" in str(exc) or "Too many connections" in str(exc)


def public_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return shown_url(url)
