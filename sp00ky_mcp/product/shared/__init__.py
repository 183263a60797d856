"""State that replicas share on Redis (`--redis-url`): sessions, their event streams, quotas
and a bus between replicas.  Without it, each
process keeps its own in memory (the engine's defaults), which is right for one process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...engine.config import Limits
from ...engine.errors import SharedStateUnavailable

if TYPE_CHECKING:  # the Redis client is imported only by a server that uses it
    from .bus import RedisBus
    from .events import RedisEventLog
    from .quotas import RedisQuotas
    from .redis import SharedLink
    from .sessions import RedisSessions

URL_ENV = "SP00KY_MCP_REDIS_URL"
# After a failure, how long calls that need Redis fail at once before it is tried again.
BREAK_SECONDS = 1.0


class SharedStateError(Exception):
    """Shared state cannot be used; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class SharedState:
    link: SharedLink
    quotas: RedisQuotas
    sessions: RedisSessions
    events: RedisEventLog
    bus: RedisBus

    async def close(self) -> None:
        await self.link.close()


def redis_url(given: str | None = None) -> str | None:
    """`--redis-url`, else $SP00KY_MCP_REDIS_URL, else None (state stays in this process)."""
    return given or os.environ.get(URL_ENV) or None


async def connect_shared(url: str, limits: Limits, pause: float = BREAK_SECONDS) -> SharedState:
    """The shared state on the Redis at `url`, once it answers (see `SharedLink` for
    `pause`)."""
    from .batch import ScriptBatch
    from .bus import RedisBus
    from .events import RedisEventLog
    from .quotas import RedisQuotas
    from .redis import SharedLink, public_url
    from .sessions import RedisSessions

    try:
        link = SharedLink(url, pause=pause)
    except (RuntimeError, ValueError) as exc:
        raise SharedStateError(str(exc)) from None
    try:
        await link.ping()
    except SharedStateUnavailable:
        await link.close()
        raise SharedStateError(
            f"Redis at {public_url(url)} does not answer; start it, or correct --redis-url."
        ) from None
    batch = ScriptBatch(link)
    bus = RedisBus(link)
    sessions = RedisSessions(
        link,
        limits.max_sessions,
        limits.max_sessions_per_principal,
        limits.session_idle_ttl,
        batch=batch,
        hearing=bus.hearing,
    )
    events = RedisEventLog(link, limits.sse_replay_events, limits.session_idle_ttl)
    return SharedState(link, RedisQuotas(link, batch, bus), sessions, events, bus)


__all__ = ["SharedState", "SharedStateError", "connect_shared", "redis_url"]
