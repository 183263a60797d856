"""The bus between replicas on Redis pub/sub: one channel all replicas listen on, each message
stamped with its sender so that a replica skips its own, and one channel per replica for what
is meant for it alone (confirmations, its own heartbeat).  Delivery is at most once (pub/sub
keeps nothing): what a message carries (a client's answer, a cancellation, an announcement,
a session ended) is either acted on at once or of no use later.  While Redis does not answer,
the listener tries again every second, and publishing fails quietly.

A message sent with `confirm` is acted on by every replica before its sender goes on: each
replica that heard it answers on the sender's channel once it has, and the sender waits for as
many answers as Redis counted listeners (at most `CONFIRM_SECONDS`).  What replicas keep in
memory of shared state (sessions they cache) is trusted only while `hearing()` says the
listener is subscribed and has heard something (at least its own heartbeat) lately: a message
missed while it was not is then never relied on.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from redis.exceptions import RedisError

from ...engine.errors import SharedStateUnavailable
from ...engine.events import Bus, Message
from .redis import SharedLink

log = logging.getLogger("sp00ky_mcp.shared")
RETRY_SECONDS = 1.0
# A listener that heard nothing, not even its own heartbeat, for this long is taken as deaf.
BEAT_SECONDS = 0.5
DEAF_SECONDS = 2.0
CONFIRM_SECONDS = 1.0

Handler = Callable[[Message], Awaitable[None]]


@dataclass(slots=True)
class _Confirmations:
    heard: int = 0
    expected: int | None = None
    done: anyio.Event = field(default_factory=anyio.Event)

    def count(self) -> None:
        self.heard += 1
        self._check()

    def expect(self, listeners: int) -> None:
        self.expected = listeners
        self._check()

    def _check(self) -> None:
        if self.expected is not None and self.heard >= self.expected:
            self.done.set()


class RedisBus(Bus):
    shared = True

    def __init__(self, link: SharedLink) -> None:
        self.link = link
        self.channel = link.key("bus")
        self.own_channel = link.key("bus", link.replica)
        self.listening = anyio.Event()
        # Set once the current subscription is lost (and made anew at the next one).
        self.deaf = anyio.Event()
        # Bumped at each subscription: what was cached under an earlier one may have missed
        # a message sent while nobody listened.
        self.epoch = 0
        self.heard_at = float("-inf")
        # Kinds the product acts on itself before confirming (a call slot asked back).
        self.handlers: dict[str, Handler] = {}
        self._waiting: dict[str, _Confirmations] = {}

    def hearing(self) -> int | None:
        """The current subscription's epoch while it is sure to hear every message, else None."""
        if not self.listening.is_set() or time.monotonic() - self.heard_at > DEAF_SECONDS:
            return None
        return self.epoch

    async def publish(self, message: Message, confirm: bool = False) -> None:
        if not confirm:
            await self._send(self.channel, {**message, "from": self.link.replica})
            return
        ticket = secrets.token_hex(8)
        waiting = self._waiting[ticket] = _Confirmations()
        try:
            sent = {**message, "from": self.link.replica, "ack": ticket}
            waiting.expect(await self._send(self.channel, sent))
            with anyio.move_on_after(CONFIRM_SECONDS):
                await waiting.done.wait()
            if not waiting.done.is_set():
                log.warning("a replica did not confirm a %s message in time", message.get("t"))
        finally:
            del self._waiting[ticket]

    async def _send(self, channel: str, message: Message) -> int:
        body = orjson.dumps(message)
        listeners: int = await self.link.run(lambda c: c.publish(channel, body))
        return listeners

    async def run(self) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._beat)
            while True:
                try:
                    await self._listen()
                except (RedisError, OSError, TimeoutError, SharedStateUnavailable) as exc:
                    log.warning("listening to the other replicas stopped (%s); trying again", exc)
                await anyio.sleep(RETRY_SECONDS)

    async def _beat(self) -> None:
        while True:
            with contextlib.suppress(SharedStateUnavailable):
                await self._send(self.own_channel, {"t": "beat"})
            await anyio.sleep(BEAT_SECONDS)

    async def _listen(self) -> None:
        pubsub = self.link.waiting.pubsub()
        try:
            await pubsub.subscribe(self.channel, self.own_channel)
            self.epoch += 1
            self.heard_at = time.monotonic()
            self.deaf = anyio.Event()
            self.listening.set()
            async for raw in pubsub.listen():
                await self._received(raw)
        finally:
            # Deaf from this moment, before the connection is even closed.
            self.listening = anyio.Event()
            self.deaf.set()
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()

    async def _received(self, raw: dict[str, Any]) -> None:
        if raw.get("type") != "message":
            return
        self.heard_at = time.monotonic()
        try:
            message = orjson.loads(raw["data"])
        except orjson.JSONDecodeError:
            log.warning("a message on the replicas' bus is not JSON; ignored")
            return
        if not isinstance(message, dict) or message.get("t") == "beat":
            return
        if message.get("t") == "confirmed":
            waiting = self._waiting.get(str(message.get("ack")))
            if waiting is not None:
                waiting.count()
            return
        await self._act(message)

    async def _act(self, message: Message) -> None:
        sender, ticket = message.get("from"), message.pop("ack", None)
        if sender != self.link.replica:
            try:
                await self._deliver(message)
            except Exception:
                log.exception("a message from another replica could not be acted on")
        if isinstance(ticket, str) and isinstance(sender, str):
            await self._confirm(sender, ticket)

    async def _deliver(self, message: Message) -> None:
        handler = self.handlers.get(str(message.get("t")))
        if handler is not None:
            await handler(message)
        else:
            self.deliver(message)

    async def _confirm(self, sender: str, ticket: str) -> None:
        if sender == self.link.replica:
            waiting = self._waiting.get(ticket)
            if waiting is not None:
                waiting.count()
            return
        try:
            await self._send(self.link.key("bus", sender), {"t": "confirmed", "ack": ticket})
        except SharedStateUnavailable:
            log.warning("a message from another replica could not be confirmed")
