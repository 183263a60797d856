"""The bus between replicas on Redis pub/sub: one channel all replicas listen on, each message
stamped with its sender so that a replica skips its own, and one channel per replica for the
confirmations meant for it.  Delivery is at most once (pub/sub keeps nothing): what a message
carries (a client's answer, a cancellation, an announcement, a session ended) is either acted
on at once or of no use later.  While Redis does not answer, the listener tries again every
second, and publishing fails quietly.

Every replica beats on the shared channel every half second: others learn who is alive, and a
listener that hears nothing, not even its own beat, for DEAF_SECONDS takes its connection as
lost without a word and subscribes again.  What replicas keep in memory of shared state
(sessions they copy) is trusted only while `hearing()` says the listener is subscribed and
heard lately: a message missed while it was not is never relied on.

A message sent with `confirm` is acted on by every replica before its sender goes on: each
replica that heard it answers on the sender's channel once it has, and the sender waits for
every replica heard beating lately (at most CONFIRM_SECONDS).  When one does not confirm, the
sender waits until `trusted_for` has passed since it sent: no copy made before is trusted
longer, so what the message said holds everywhere all the same.
"""

from __future__ import annotations

import asyncio
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
# How long a replica trusts a copy of a session since Redis confirmed it (see sessions.py).
TRUST_SECONDS = 2.0

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
        # How long a copy of shared state may be trusted after Redis confirmed it: a message
        # not confirmed by every replica is waited out for that long (see `publish`).
        self.trusted_for = TRUST_SECONDS
        # Kinds the product acts on itself before confirming (a call slot asked back).
        self.handlers: dict[str, Handler] = {}
        self._waiting: dict[str, _Confirmations] = {}
        # The other replicas, by when each was last heard beating.
        self._peers: dict[str, float] = {}
        self._acting: set[asyncio.Future[None]] = set()

    def hearing(self) -> int | None:
        """The current subscription's epoch while it is sure to hear every message, else None."""
        if not self.listening.is_set() or time.monotonic() - self.heard_at > DEAF_SECONDS:
            return None
        return self.epoch

    async def publish(self, message: Message, confirm: bool = False) -> None:
        if not confirm:
            await self._send(self.channel, {**message, "from": self.link.replica})
            return
        started = time.monotonic()
        if not await self._confirmed(message):
            # A replica may still trust a copy it had before this message: once the longest
            # such trust has run out, none does.
            log.warning("not every replica confirmed a %s message; waiting it out", message["t"])
            await anyio.sleep(max(0.0, started + self.trusted_for - time.monotonic()))

    async def _confirmed(self, message: Message) -> bool:
        """Whether every replica alive confirmed `message` within CONFIRM_SECONDS."""
        ticket = secrets.token_hex(8)
        waiting = self._waiting[ticket] = _Confirmations()
        try:
            sent = {**message, "from": self.link.replica, "ack": ticket}
            listeners = await self._send(self.channel, sent)
            # A replica gone without closing its connection stays counted by Redis for a
            # while: only those heard beating lately are waited for.
            waiting.expect(min(listeners, self._alive() + (self.hearing() is not None)))
            with anyio.move_on_after(CONFIRM_SECONDS):
                await waiting.done.wait()
            return waiting.done.is_set()
        except SharedStateUnavailable:
            return False
        finally:
            del self._waiting[ticket]

    def _alive(self) -> int:
        now = time.monotonic()
        for replica, heard in list(self._peers.items()):
            if now - heard > DEAF_SECONDS:
                del self._peers[replica]
        return len(self._peers)

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
        """Heard by every replica (and by this one: the proof its listener still hears)."""
        while True:
            with contextlib.suppress(SharedStateUnavailable):
                await self._send(self.channel, {"t": "beat", "from": self.link.replica})
            await anyio.sleep(BEAT_SECONDS)

    async def _listen(self) -> None:
        pubsub = self.link.waiting.pubsub()
        try:
            # Bounded here: the waiting connections have no socket timeout of their own.
            with anyio.fail_after(DEAF_SECONDS):
                await pubsub.subscribe(self.channel, self.own_channel)
            self.epoch += 1
            self.heard_at = time.monotonic()
            self.deaf = anyio.Event()
            self.listening.set()
            while True:
                raw = await pubsub.get_message(timeout=BEAT_SECONDS)
                if raw is not None:
                    self._received(raw)
                if time.monotonic() - self.heard_at > DEAF_SECONDS:
                    # Not even its own heartbeat: a connection lost without a word.
                    raise TimeoutError("nothing heard, not even this replica's heartbeat")
        finally:
            # Deaf from this moment, before the connection is even closed.
            self.listening = anyio.Event()
            self.deaf.set()
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()

    def _received(self, raw: dict[str, Any]) -> None:
        if raw.get("type") != "message":
            return
        self.heard_at = time.monotonic()
        try:
            message = orjson.loads(raw["data"])
        except orjson.JSONDecodeError:
            log.warning("a message on the replicas' bus is not JSON; ignored")
            return
        if not isinstance(message, dict):
            return
        kind, sender = message.get("t"), message.get("from")
        if kind == "beat":
            if isinstance(sender, str) and sender != self.link.replica:
                self._peers[sender] = self.heard_at
        elif kind == "confirmed":
            waiting = self._waiting.get(str(message.get("ack")))
            if waiting is not None:
                waiting.count()
        else:
            self._act(message)

    def _act(self, message: Message) -> None:
        """Acted on without holding up the listener: what the service does is done at once,
        what the product does (a round trip) in a task of its own; then confirmed."""
        sender, ticket = message.get("from"), message.pop("ack", None)
        handler = self.handlers.get(str(message.get("t")))
        if sender == self.link.replica:
            work = None
        elif handler is not None:
            work = handler(message)
        else:
            self._delivered(message)
            work = None
        if work is None and not isinstance(ticket, str):
            return
        acting = asyncio.ensure_future(self._finish(work, sender, ticket))
        self._acting.add(acting)
        acting.add_done_callback(self._acting.discard)

    def _delivered(self, message: Message) -> None:
        try:
            self.deliver(message)
        except Exception:
            log.exception("a message from another replica could not be acted on")

    async def _finish(self, work: Awaitable[None] | None, sender: Any, ticket: Any) -> None:
        if work is not None:
            try:
                await work
            except Exception:
                log.exception("a message from another replica could not be acted on")
        if isinstance(ticket, str) and isinstance(sender, str):
            await self._confirm(sender, ticket)

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
