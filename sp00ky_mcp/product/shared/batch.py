"""Scripts called in one turn of the event loop go to Redis together, in one pipeline: under
load, the decisions of many connections (a session read, a call's slot) share a round trip,
which costs the server far more CPU than the scripts themselves, and each caller still gets its
own answer.  The same idea as ioredis's auto-pipelining.

Scripts are run by their SHA (EVALSHA), loaded once per Redis server; one that Redis does not
know (a restarted Redis) is loaded and run again on its own.  A caller that stopped waiting
(cancelled) does not stop its script: `undo` is then told of the result, so that what the
script took (a call's slot) can be given back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from ...engine.errors import SharedStateUnavailable
from .redis import SharedLink

log = logging.getLogger("sp00ky_mcp.shared")
Undo = Callable[[Any], None]


@dataclass(slots=True)
class _Call:
    script: AsyncScript
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any]
    undo: Undo | None = None


@dataclass
class ScriptBatch:
    link: SharedLink
    _queue: list[_Call] = field(default_factory=list)
    _sending: set[asyncio.Future[None]] = field(default_factory=set)

    async def __call__(
        self, script: AsyncScript, keys: list[str], args: list[Any], undo: Undo | None = None
    ) -> Any:
        loop = asyncio.get_running_loop()
        if not self._queue:
            # After this turn: whatever else is decided in it joins the same round trip.
            loop.call_soon(self._send)
        call = _Call(script, keys, args, loop.create_future(), undo)
        self._queue.append(call)
        return await call.future

    async def settle(self) -> None:
        """Until every round trip under way has been answered (and its callers told)."""
        while self._queue or self._sending:
            await asyncio.sleep(0)
            if self._sending:
                await asyncio.gather(*self._sending, return_exceptions=True)

    def _send(self) -> None:
        batch, self._queue = self._queue, []
        sending = asyncio.ensure_future(self._flush(batch))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _flush(self, batch: list[_Call]) -> None:
        try:
            results = await self.link.run(lambda client: _pipelined(client, batch))
        except SharedStateUnavailable:
            results = [SharedStateUnavailable()] * len(batch)
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):
                result = await self._alone(call)
            self._settle(call, result)

    async def _alone(self, call: _Call) -> Any:
        """A script Redis did not know: loaded, and run on its own."""
        try:
            return await self.link.run(
                lambda client: call.script(keys=call.keys, args=call.args, client=client)
            )
        except SharedStateUnavailable as exc:
            return exc

    def _settle(self, call: _Call, result: Any) -> None:
        if call.future.cancelled():
            if call.undo is not None and not isinstance(result, Exception):
                call.undo(result)
            return
        if isinstance(result, Exception):
            if not isinstance(result, SharedStateUnavailable):
                log.error("a script on Redis failed: %s", result)
            call.future.set_exception(SharedStateUnavailable())
        else:
            call.future.set_result(result)


async def _pipelined(client: Any, batch: list[_Call]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for call in batch:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        try:
            results: list[Any] = await pipe.execute(raise_on_error=False)
        except RedisError as exc:
            if isinstance(exc, NoScriptError):  # pragma: no cover - returned, not raised
                return [exc] * len(batch)
            raise
    return results
