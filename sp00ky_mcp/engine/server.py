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

from .catalogue import Catalogue, Tool
from .config import ServerConfig
from .context import ANONYMOUS, CallContext, Principal
from .errors import HttpError, SharedStateUnavailable
from .h1 import plain_response
from .http import HttpRequest, HttpServer, Response
from .ops import Check, LineWriter, Operations, Readiness
from .ports import Ports
from .protocol import METHODS, Engine, ToolObserver, ToolResult, verdict
from .service import LISTEN, Authenticator, McpService, Pages
from .tracing import Tracing

log = logging.getLogger("sp00ky_mcp")
LOOPBACK = "127.0.0.1"
# Notifications a client sends, counted by name; any other is counted as "POST".
NOTIFICATIONS = (
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
)


def operations(config: ServerConfig) -> Operations:
    """Metrics and access lines as configured (neither: nothing is counted or written)."""
    return Operations(
        metrics=config.metrics or config.metrics_port is not None,
        lines=LineWriter(json=config.log_format == "json") if config.access_log else None,
        methods=frozenset(METHODS) | {"initialize", LISTEN, "batch", *NOTIFICATIONS},
    )


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
        ready: dict[str, Check] | None = None,
        pages: Pages | None = None,
        scope_challenge: Callable[[str], HttpError] | None = None,
    ) -> None:
        self.config = config
        self.on_stop = on_stop
        self.ops = operations(config)
        self.tracing = Tracing() if config.traces else None
        if self.ops.enabled or self.tracing is not None:
            observer = self._observing(observer)
        self.engine = Engine(catalogue or Catalogue(), instructions, scope_hint, observer)
        readiness = Readiness(dict(ready or {}))
        self.engine.scope_challenge = scope_challenge
        self.service = McpService(
            config, self.engine, authenticate, ports, self.ops, readiness, self.tracing
        )
        self.service.pages = pages
        # Run for as long as the server serves (a shared state's heartbeat, say).
        self.background = tuple(background)
        self.http = HttpServer(self.service, config.limits, self.ops.completed)
        self.ops.streams_open = lambda: float(self.http.streams_open)
        # Metrics on a port of their own, on loopback only, when asked for.
        self.metrics_http: HttpServer | None = None
        if config.metrics_port is not None:
            self.metrics_http = HttpServer(self._metrics_only, config.limits)
        self.port: int | None = None
        self.metrics_port: int | None = None
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
                if self.metrics_http is not None:
                    port = self.config.metrics_port
                    self.metrics_port = await tasks.start(self.metrics_http.serve, LOOPBACK, port)
                task_status.started()
                await self.http.stopped()
                if self.metrics_http is not None:
                    self.metrics_http.shutdown()
                tasks.cancel_scope.cancel()
        finally:
            if self.on_stop is not None:
                with anyio.CancelScope(shield=True):
                    await self.on_stop()
            if self.ops.lines is not None:
                self.ops.lines.flush()
            self._stopped.set()

    async def _sweep_sessions(self) -> None:
        interval = min(60.0, self.config.limits.session_idle_ttl / 4)
        while True:
            await anyio.sleep(interval)
            try:
                await self.service.sweep()
            except SharedStateUnavailable:
                # Redis is away (readiness says so too); the next sweep tries again.
                log.warning("sweeping idle sessions: the shared session state is unreachable")
            except Exception:
                # A session's release that fails must not stop the server; the next sweep
                # tries again.
                log.exception("sweeping idle sessions failed")

    def _observing(self, observer: ToolObserver | None) -> ToolObserver:
        """The tool call counted and logged, traced, then the product's observer (the audit
        trail); only counted and logged is the operations' own observer, one call fewer."""
        ops, tracing = self.ops, self.tracing
        if tracing is None and observer is None:
            return ops.tool_ran

        def observe(
            ctx: CallContext,
            tool: Tool,
            arguments: dict[str, Any],
            outcome: ToolResult | None,
            started: float,
        ) -> None:
            ops.tool_ran(ctx, tool, arguments, outcome, started)
            if tracing is not None:
                tracing.tool_ran(tool.name, verdict(outcome), started)
            if observer is not None:
                observer(ctx, tool, arguments, outcome, started)

        return observe

    async def _metrics_only(self, request: HttpRequest) -> Response:
        if request.path != "/metrics":
            return plain_response(404, "Not found: metrics are at /metrics.")
        return await self.service.metrics()

    def shutdown(self) -> None:
        self.service.begin_shutdown()
        self.http.shutdown()

    async def wait_stopped(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()
