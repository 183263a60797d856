"""The embedding API: run sp00ky-mcp inside an existing anyio (asyncio) program.

    server = McpServer(ServerConfig(port=0), catalogue=my_catalogue, authenticate=my_auth)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        print(server.url)
        ...
        server.shutdown()        # stop accepting, finish in-flight requests, end SSE streams

`authenticate` is required: a server that lets everyone in is a choice made by name
(`authenticate=anonymous()`), never a default.  The CLI is one user of this API, the
test-suite another.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

import anyio
import anyio.abc

from .catalogue import Catalogue
from .config import ServerConfig
from .context import ANONYMOUS, CallContext, Principal
from .http import HttpRequest, HttpServer
from .ports import Ports
from .protocol import Engine, ToolObserver
from .service import Authenticator, McpService

log = logging.getLogger("sp00ky_mcp")


def anonymous(*, reveal_secrets: bool = False) -> Authenticator:
    """No authentication, as an explicit choice (the loopback conformance profile, tests):
    every caller sees every tool.  Secret values stay masked unless `reveal_secrets`."""
    principal = replace(ANONYMOUS, can_reveal=True) if reveal_secrets else ANONYMOUS

    def authenticate(request: HttpRequest) -> Principal:
        return principal

    return authenticate


allow_anonymous = anonymous()


class McpServer:
    def __init__(
        self,
        config: ServerConfig,
        catalogue: Catalogue | None = None,
        *,
        authenticate: Authenticator,
        instructions: Callable[[CallContext], str | None] | None = None,
        scope_hint: Callable[[str], str] | None = None,
        observer: ToolObserver | None = None,
        on_stop: Callable[[], Awaitable[None]] | None = None,
        ports: Ports | None = None,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.config = config
        self.on_stop = on_stop
        self.engine = Engine(catalogue or Catalogue(), instructions, scope_hint, observer)
        self.service = McpService(config, self.engine, authenticate, ports)
        # Run for as long as the server serves (a shared state's heartbeat, say).
        self.background = tuple(background)
        self.http = HttpServer(self.service, config.limits)
        self.port: int | None = None
        self._stopped: anyio.Event | None = None

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{self.config.endpoint}"

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, report started, and serve until `shutdown()`; returns once drained."""
        self._stopped = anyio.Event()
        try:
            async with anyio.create_task_group() as tasks:
                config = self.config
                self.port = await tasks.start(
                    self.http.serve, config.host, config.port, config.reuse_port
                )
                tasks.start_soon(self._sweep_sessions)
                tasks.start_soon(self.service.events.run)
                tasks.start_soon(self.service.bus.run)
                tasks.start_soon(self.service.sessions.run)
                tasks.start_soon(self.service.quotas.run)
                for job in self.background:
                    tasks.start_soon(job)
                task_status.started()
                await self.http.stopped()
                tasks.cancel_scope.cancel()
        finally:
            if self.on_stop is not None:
                with anyio.CancelScope(shield=True):
                    await self.on_stop()
            self._stopped.set()

    async def _sweep_sessions(self) -> None:
        interval = min(60.0, self.config.limits.session_idle_ttl / 4)
        while True:
            await anyio.sleep(interval)
            try:
                await self.service.sweep()
            except Exception:
                # A session's release that fails must not stop the server; the next sweep
                # tries again.
                log.exception("sweeping idle sessions failed")

    def shutdown(self) -> None:
        self.service.begin_shutdown()
        self.http.shutdown()

    async def wait_stopped(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()
