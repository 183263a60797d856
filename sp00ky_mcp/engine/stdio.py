"""The stdio transport (transports, "stdio"): the client starts the server as a subprocess and
they exchange JSON-RPC messages, one per line, UTF-8, on its standard input and output; the
server writes nothing else there (logs go to standard error).  One handshake-era session for
the life of the process; it ends when the client closes standard input.

Requests are answered concurrently, each in a task of its own (a long call does not hold up a
ping), and `notifications/cancelled` cancels one; a tool may notify (progress, logs) and ask
the client (elicitation, sampling) as over HTTP.  Every request is authenticated again, so a
token revoked or expired meanwhile is refused from its next request.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import orjson

from . import jsonrpc, transport
from .context import CallContext, Principal, progress_token_of
from .errors import INTERNAL_ERROR, INVALID_REQUEST, REFUSED, REUSED_ID, HttpError, JsonRpcError
from .protocol import METHODS, Engine
from .runtime import Waiter, answer_of
from .sessions import Session, SessionEvent
from .versions import Era, negotiate

log = logging.getLogger("sp00ky_mcp.stdio")
INTERNAL = JsonRpcError(INTERNAL_ERROR, "Internal error.")
BUSY = JsonRpcError(
    INVALID_REQUEST,
    "Too many requests at once on this connection; wait for an answer, then send the next.",
)
REUSED = REUSED_ID
# Lifecycle ("Initialization"): the client sends initialize first and once; before it only a
# ping may come.
NOT_YET = JsonRpcError(INVALID_REQUEST, "Invalid Request: send initialize first.")
AGAIN = JsonRpcError(
    INVALID_REQUEST, "Invalid Request: this session is already initialized; start a new process."
)
Write = Callable[[bytes], Awaitable[None]]


class StdioPeer:
    """What a handler sends the client while it runs: on standard output, between answers."""

    def __init__(self, server: StdioServer) -> None:
        self.server = server

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self.server.send(jsonrpc.encode_notification(method, params))

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        return await self.server.ask(method, params)

    def interrupt(self) -> None:
        return None


class StdioServer:
    def __init__(
        self,
        engine: Engine,
        authenticate: Callable[[], Awaitable[Principal]],
        write: Write,
        max_line_bytes: int,
        max_running: int = 32,
    ) -> None:
        self.engine = engine
        self.authenticate = authenticate
        self.write = write
        self.max_line_bytes = max_line_bytes
        # Requests answered at once, as a token's calls in flight are bounded over HTTP.
        self.max_running = max_running
        self.session = Session("stdio", None, negotiate(None), {}, None, 0.0)
        self.peer = StdioPeer(self)
        self._writing = anyio.Lock()
        # The requests being answered, by id: each one's scope, made when it is taken (a
        # cancellation may come before its task starts).
        self._running: dict[Any, anyio.CancelScope] = {}
        self._asked: dict[str, Waiter] = {}
        self._numbers = itertools.count(1)
        self.closed = False
        self._answering = 0
        self._initialized = False

    async def serve(self, lines: AsyncIterator[bytes], grace: float = 10.0) -> None:
        """Until standard input closes; requests still running then are answered (a question
        to the client can no longer be, and fails) within `grace` seconds, then cancelled."""
        async with anyio.create_task_group() as tasks:
            async for line in lines:
                await self._received(line.strip(), tasks)
            self.closed = True
            for waiter in self._asked.values():
                waiter.event.set()
            tasks.cancel_scope.deadline = anyio.current_time() + grace

    async def send(self, message: bytes) -> None:
        async with self._writing:
            await self.write(message + b"\n")

    async def ask(self, method: str, params: dict[str, Any]) -> Any:
        if self.closed:
            return answer_of(method, None)
        request_id = f"s-{next(self._numbers)}"
        waiter = self._asked[request_id] = Waiter()
        try:
            await self.send(jsonrpc.encode_request(request_id, method, params))
            await waiter.event.wait()
        finally:
            self._asked.pop(request_id, None)
        return answer_of(method, waiter.response)

    async def _received(self, line: bytes, tasks: anyio.abc.TaskGroup) -> None:
        if not line:
            return
        if len(line) > self.max_line_bytes:
            limit = self.max_line_bytes
            await self._refuse(f"Invalid Request: a message may be at most {limit} bytes.")
            return
        batch = transport.read_messages(line)
        if isinstance(batch, HttpError):
            await self._refuse(batch.message, batch.rpc_code or INVALID_REQUEST)
            return
        for message in batch.messages:
            await self._take(message, tasks)

    async def _refuse(self, text: str, code: int = INVALID_REQUEST) -> None:
        await self.send(jsonrpc.encode_error(None, JsonRpcError(code, text)))

    async def _take(self, message: jsonrpc.Message, tasks: anyio.abc.TaskGroup) -> None:
        if isinstance(message, jsonrpc.Request):
            refusal = self._refusal(message)
            if refusal is not None:
                await self.send(jsonrpc.encode_error(message.id, refusal))
            else:
                self._answering += 1  # counted now: its task may start after the next line
                scope = self._running[message.id] = anyio.CancelScope()
                tasks.start_soon(self._answer, message, scope)
        elif isinstance(message, jsonrpc.Invalid):
            await self.send(jsonrpc.encode_error(message.id, message.error))
        elif isinstance(message, jsonrpc.Response):
            waiter = self._asked.get(str(message.id))
            if waiter is not None:
                waiter.response = message
                waiter.event.set()
        elif message.method == "notifications/initialized":
            self.session.advance(SessionEvent.INITIALIZED)
        elif message.method == "notifications/cancelled":
            self._cancel(message.params.get("requestId"))

    def _refusal(self, message: jsonrpc.Request) -> JsonRpcError | None:
        """Why a request is not run: too many at once, an id still in use (its cancellation
        could not tell the two apart), or out of the lifecycle's order."""
        if self._answering >= self.max_running:
            return BUSY
        if message.id in self._running:
            return REUSED
        if message.method == "initialize":
            if self._initialized:
                return AGAIN
            # Taken now, so that a request sent right behind it sees the session it makes.
            self._initialized = True
            self._initialize(message.params)
        elif not self._initialized and message.method != "ping" and _served(message.method):
            return NOT_YET
        return None

    def _cancel(self, request_id: Any) -> None:
        """A request id is a string or an integer; anything else names no request (and
        `true` must not name request 1)."""
        if isinstance(request_id, bool) or not isinstance(request_id, str | int):
            return
        scope = self._running.get(request_id)
        if scope is not None:
            scope.cancel()

    async def _answer(self, message: jsonrpc.Request, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                try:
                    body = await self._answered(message)
                finally:
                    self._running.pop(message.id, None)
                await self.send(body)
        finally:
            self._answering -= 1
        # A cancelled request gets no response (basic/utilities/cancellation).

    async def _answered(self, message: jsonrpc.Request) -> bytes:
        """The boundary: exactly one JSON-RPC response, whatever the handler does.  An
        initialize that fails leaves the session new, to be initialized again (lifecycle)."""
        succeeded = False
        try:
            body = await self._result(message)
            succeeded = True
            return body
        except JsonRpcError as exc:
            return jsonrpc.encode_error(message.id, exc)
        except HttpError as exc:  # the token refused: said as the request's error
            return jsonrpc.encode_error(message.id, _refused(exc))
        except Exception:
            log.exception("unhandled error in %s", message.method)
            return jsonrpc.encode_error(message.id, INTERNAL)
        finally:
            if not succeeded and message.method == "initialize":
                self._initialized = False

    async def _result(self, message: jsonrpc.Request) -> bytes:
        ctx = self._context(message, await self.authenticate())
        result = await self.engine.call(message.method, message.params, ctx)
        return orjson.dumps(
            {"jsonrpc": "2.0", "id": message.id, "result": result},
            default=self.engine.encode_default(ctx),
        )

    def _initialize(self, params: dict[str, Any]) -> None:
        session = self.session
        session.protocol_version = negotiate(params.get("protocolVersion"))
        capabilities, info = params.get("capabilities"), params.get("clientInfo")
        session.client_capabilities = capabilities if isinstance(capabilities, dict) else {}
        session.client_info = info if isinstance(info, dict) else None

    def _context(self, message: jsonrpc.Request, principal: Principal) -> CallContext:
        session = self.session
        return CallContext(
            era=Era.HANDSHAKE,
            protocol_version=session.protocol_version,
            principal=principal,
            peer=self.peer,
            client_capabilities=session.client_capabilities,
            client_info=session.client_info,
            log_level=session.log_level,
            progress_token=progress_token_of(message.params),
            session=session,
        )


def _refused(exc: HttpError) -> JsonRpcError:
    """A refusal of the token (rate limit, revoked, store away) as a request's error, coded
    as a batch's refused slot is over HTTP: with no header to carry it, the wait goes in the
    message and in `data.retryAfter`."""
    code = exc.rpc_code or REFUSED
    retry = dict(exc.headers).get("retry-after")
    if retry is None:
        return JsonRpcError(code, exc.message)
    seconds = int(retry)
    wait = f"{seconds} second{'' if seconds == 1 else 's'}"
    return JsonRpcError(code, f"{exc.message.rstrip('.')} ({wait}).", {"retryAfter": seconds})


def _served(method: str) -> bool:
    """Whether the session serves `method` once initialized; one it never serves (a probe
    such as the stateless era's server/discover) is answered -32601 at any time."""
    spec = METHODS.get(method)
    return spec is not None and Era.HANDSHAKE in spec.eras
