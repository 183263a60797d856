"""The bus between replicas on Redis pub/sub: one channel all replicas listen on, each message
stamped with its sender so that a replica skips its own.  Delivery is at most once (pub/sub
keeps nothing): what a message carries (a client's answer, a cancellation, an announcement,
a session ended) is either acted on at once or of no use later.  While Redis does not answer,
the listener tries again every second, and publishing fails quietly.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import orjson
from redis.exceptions import RedisError

from ...engine.errors import SharedStateUnavailable
from ...engine.events import Bus, Message
from .redis import SharedLink

log = logging.getLogger("sp00ky_mcp.shared")
RETRY_SECONDS = 1.0


class RedisBus(Bus):
    shared = True

    def __init__(self, link: SharedLink) -> None:
        self.link = link
        self.channel = link.key("bus")
        self.listening = anyio.Event()

    async def publish(self, message: Message) -> None:
        body = orjson.dumps({**message, "from": self.link.replica})
        await self.link.run(lambda c: c.publish(self.channel, body))

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError, TimeoutError, SharedStateUnavailable) as exc:
                log.warning("listening to the other replicas stopped (%s); trying again", exc)
            self.listening = anyio.Event()
            await anyio.sleep(RETRY_SECONDS)

    async def _listen(self) -> None:
        pubsub = self.link.waiting.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            self.listening.set()
            async for raw in pubsub.listen():
                self._received(raw)
        finally:
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()

    def _received(self, raw: dict[str, Any]) -> None:
        if raw.get("type") != "message":
            return
        try:
            message = orjson.loads(raw["data"])
        except orjson.JSONDecodeError:
            log.warning("a message on the replicas' bus is not JSON; ignored")
            return
        if isinstance(message, dict) and message.get("from") != self.link.replica:
            try:
                self.deliver(message)
            except Exception:
                log.exception("a message from another replica could not be acted on")
