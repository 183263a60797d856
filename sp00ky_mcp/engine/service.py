"""The MCP endpoint: Streamable HTTP on top of `http`, dispatching to the pure `protocol`.

Every request goes through a sequence of small decisions (route, host, origin, auth, method,
headers, body, era, session); the first that refuses ends the request with its `HttpError`.
`_answer` is the one exception-to-wire boundary: anything unexpected becomes -32603 with a
generic message, and the traceback goes to the server log only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import orjson

from . import jsonrpc, sse, transport
from .config import ServerConfig
from .context import CallContext, InputRequired, Peer, Principal, progress_token_of
from .errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CAPABILITY,
    QUOTED_CHARS,
    REFUSED,
    REUSED_ID,
    HttpError,
    JsonRpcError,
    SharedStateUnavailable,
)
from .events import Message
from .http import (
    STREAMED,
    Header,
    HttpRequest,
    HttpResponse,
    Response,
    StreamingResponse,
    plain_response,
)
from .listen import Listener, Listeners
from .mrtr import RequestStateSigner, input_required_result
from .ops import Operations, Readiness, RequestFacts
from .ports import Ports
from .protocol import Engine, client_description_problem
from .runtime import CallInterrupt, DetachedPeer, InlinePeer, Retained, SessionRuntime
from .sessions import LocalSessions, Mark, Session, SessionEvent, new_session_id
from .streams import EventStream, StreamItem, split_event_id
from .tally import Tally
from .tracing import Tracing
from .versions import (
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    Era,
    has_priming_events,
    is_modern,
    negotiate,
)

log = logging.getLogger("sp00ky_mcp.engine.service")

# Either kind: a check that needs no IO may answer at once.
Authenticator = Callable[[HttpRequest], Principal | Awaitable[Principal]]
JSON_HEADERS: list[Header] = [(b"content-type", b"application/json")]
INTERNAL = JsonRpcError(
    INTERNAL_ERROR, "Internal error: the server could not complete the request."
)
LISTEN = "subscriptions/listen"
# Long-lived streams (GET streams, resumptions, subscriptions/listen) each hold a connection;
# one token may hold this many at once, so that it cannot take every connection slot.
MAX_STREAMS_PER_TOKEN = 16


def json_response(status: int, body: bytes, extra: list[Header] | None = None) -> HttpResponse:
    return HttpResponse(status, JSON_HEADERS + (extra or []), body)


def sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(200, list(sse.HEADERS), body)


def rejection(error: HttpError) -> HttpResponse:
    headers = [(k.encode(), v.encode()) for k, v in error.headers]
    if error.rpc_code is None:
        return plain_response(error.status, error.message, headers)
    rpc = JsonRpcError(error.rpc_code, error.message)
    return json_response(error.status, jsonrpc.encode_error(None, rpc), headers)


def modern_status(code: int | None) -> int:
    """2026-07-28 transports: header, version, capability and malformed-_meta errors are 400;
    an unknown method is 404; other JSON-RPC errors travel with 200."""
    if code == METHOD_NOT_FOUND:
        return 404
    if code == MISSING_CAPABILITY:
        return 400
    return 200


METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class Changes:
    """A request's session and what its changeable parts were when last saved."""

    session: Session
    mark: Mark


# Tuples, not unions: `isinstance` with `A | B` builds the union on every call.
CALLS_AND_NOTES = (jsonrpc.Request, jsonrpc.Notification)
ANSWERABLE = (jsonrpc.Request, jsonrpc.Invalid)


Pages = Callable[[HttpRequest], Awaitable[Response | None]]


def _note_post(facts: RequestFacts, batch: transport.Batch, era: Era) -> None:
    facts["era"] = "2026-07-28" if era is Era.MODERN else "handshake"
    first = batch.first
    if batch.is_batch:
        facts["method"] = "batch"
    elif isinstance(first, CALLS_AND_NOTES):
        method = first.method
        # A client's name for a method may run to the body's size: the line keeps what a
        # message would quote of it.
        facts["method"] = method if len(method) <= QUOTED_CHARS else f"{method[:QUOTED_CHARS]}…"


def _reused(request_id: jsonrpc.RequestId) -> tuple[bytes, int]:
    return jsonrpc.encode_error(request_id, REUSED_ID), INVALID_REQUEST


class McpService:
    def __init__(
        self,
        config: ServerConfig,
        engine: Engine,
        authenticate: Authenticator,
        ports: Ports | None = None,
        ops: Operations | None = None,
        readiness: Readiness | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        limits = config.limits
        ports = ports or Ports()
        self.config = config
        self.ops = ops or Operations()
        self.tracing = tracing
        self.ops.sessions_open = lambda: float(len(self.runtimes))
        self.readiness = readiness or Readiness()
        # Beside the MCP endpoint, unauthenticated and revealing nothing but status.
        self.side: dict[str, Callable[[], Awaitable[Response]]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
        }
        if config.metrics:
            self.side["/metrics"] = self.metrics
        # The application's own pages beside the endpoint (sign-in, its metadata), if any:
        # None from them is a 404.
        self.pages: Pages | None = None
        self.engine = engine
        self.authenticate = authenticate
        # What this process holds for each session it served (streams, calls, waiters).
        self.runtimes: dict[str, SessionRuntime] = {}
        self.sessions = ports.sessions or LocalSessions(
            limits.max_sessions,
            limits.max_sessions_per_principal,
            limits.session_idle_ttl,
            on_end=self._session_ended,
        )
        self.sessions.on_end = self._session_ended
        self.events = ports.events
        self.bus = ports.bus
        self.bus.deliver = self._delivered
        self._sending: set[asyncio.Future[None]] = set()
        self._ending: set[asyncio.Future[None]] = set()
        self.hosts = transport.allowed_hosts(config.allowed_hosts, config.host, config.public_url)
        self.origins = frozenset(o.rstrip("/") for o in config.allowed_origins)
        # Without configured keys, one process signs with a key of its own (see `keys`).
        self.signer = RequestStateSigner(ports.keys)
        self.quotas = ports.quotas
        self.streaming = Tally()
        self.retained = Retained()
        offered = {"toolsListChanged", "promptsListChanged", "resourcesListChanged"}
        if engine.catalogue.has_resources:
            offered.add("resourceSubscriptions")
        self.listeners = Listeners(frozenset(offered), limits.sse_replay_events)

    def begin_shutdown(self) -> None:
        """Long-lived streams end now; requests in flight finish within the grace period."""
        self.listeners.end_all()
        for runtime in list(self.runtimes.values()):
            if runtime.standalone is not None:
                runtime.standalone.close()

    async def end_principal_sessions(self, owner: str) -> None:
        await self.sessions.remove_owner(owner)

    async def sweep(self) -> None:
        """Ends sessions idle past their TTL, and releases what this process holds for
        sessions ended anywhere."""
        for session_id in await self.sessions.sweep(time.monotonic(), list(self.runtimes)):
            self._release(session_id)

    def _session_ended(self, session_id: str) -> None:
        """Ended by this replica's store: released here, and by the others when told (see
        `_told`)."""
        self._release(session_id)
        if self.bus.shared:
            telling = asyncio.ensure_future(
                self.bus.publish({"t": "ended", "s": session_id}, confirm=True)
            )
            self._ending.add(telling)
            telling.add_done_callback(self._sent)
            telling.add_done_callback(self._ending.discard)

    async def _told(self) -> None:
        """Once the other replicas have let go of the sessions ended here so far: a client
        told its session ended finds it ended on every replica."""
        if self._ending:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(list(self._ending))

    def _release(self, session_id: str) -> None:
        runtime = self.runtimes.pop(session_id, None)
        if runtime is not None:
            runtime.close()

    # --- the bus between replicas ------------------------------------------------------------

    def _tell(self, message: Message) -> None:
        """Sends `message` to the other replicas in the background (none in one process)."""
        if self.bus.shared:
            self._spawn(self.bus.publish(message))

    def _spawn(self, work: Awaitable[None]) -> None:
        sending = asyncio.ensure_future(work)
        self._sending.add(sending)
        sending.add_done_callback(self._sent)

    async def _reread(self, session_id: str, runtime: SessionRuntime) -> None:
        session = await self.sessions.get(session_id, time.monotonic())
        if session is not None:
            session.runtime = runtime
            runtime.session = session

    def _sent(self, sending: asyncio.Future[None]) -> None:
        self._sending.discard(sending)
        if not sending.cancelled() and sending.exception() is not None:
            log.warning("work shared with the other replicas failed: %s", sending.exception())

    def _delivered(self, message: Message) -> None:
        """What another replica sent: an answer or a cancellation for a call running here,
        an announcement, a session ended there."""
        kind, session_id = message.get("t"), message.get("s")
        runtime = self.runtimes.get(session_id) if isinstance(session_id, str) else None
        if kind == "announce":
            self._announce_here(str(message.get("method")), _dict(message.get("params")))
        elif kind == "ended" and isinstance(session_id, str):
            self.sessions.forget(session_id)
            self._release(session_id)
        elif kind == "changed" and isinstance(session_id, str):
            self.sessions.forget(session_id)
            if runtime is not None:
                self._spawn(self._reread(session_id, runtime))
        elif kind == "answer" and runtime is not None:
            response = _response_of(_dict(message.get("m")))
            if response is not None:
                runtime.resolve(response)
        elif kind == "cancel" and runtime is not None:
            runtime.cancel(message.get("id"))

    def _attach(self, session: Session) -> Session:
        """The session with this process's runtime for it (made at its first use here)."""
        runtime = self.runtimes.get(session.id)
        if runtime is None:
            runtime = self.runtimes[session.id] = SessionRuntime(
                self.config.limits.sse_replay_events, session.id, self.events, self.retained
            )
        runtime.session = session
        session.runtime = runtime
        return session

    async def __call__(self, request: HttpRequest) -> Response:
        if self.ops.enabled:
            request.facts = self.ops.begin(request.channel)
        try:
            return await self._route(request)
        except HttpError as exc:
            return rejection(exc)
        except Exception:
            log.exception("unhandled error answering %s %s", request.method, request.path)
            return json_response(500, jsonrpc.encode_error(None, INTERNAL))

    async def _route(self, request: HttpRequest) -> Response:
        if request.path != self.config.endpoint:
            return await self._beside(request)
        _raise(transport.check_host(request.header("host"), self.hosts))
        _raise(transport.check_origin(request.header("origin"), self.hosts, self.origins))
        principal = await self._authenticate(request)
        request.authenticated = True
        facts = request.facts
        if facts is not None:
            facts["token_id"], facts["token_name"] = principal.token_id, principal.name
        if request.method == "POST":
            return await self._post(request, principal)
        if request.method == "GET":
            return await self._get(request, principal)
        if request.method == "DELETE":
            return await self._delete(request, principal)
        raise HttpError(
            405, "Method not allowed: use POST, GET or DELETE.", (("allow", "GET, POST, DELETE"),)
        )

    # --- beside the endpoint: health, readiness, metrics --------------------------------------

    async def _beside(self, request: HttpRequest) -> Response:
        answer = self.side.get(request.path)
        if answer is None:
            page = await self._page(request)
            if page is not None:
                return page
            return plain_response(404, f"Not found: the MCP endpoint is {self.config.endpoint}.")
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, "Method not allowed: use GET.", (("allow", "GET, HEAD"),))
        return await answer()

    async def _page(self, request: HttpRequest) -> Response | None:
        if self.pages is None:
            return None
        _raise(transport.check_host(request.header("host"), self.hosts))
        return await self.pages(request)

    async def _healthz(self) -> Response:
        """The process serves (liveness): nothing else is looked at."""
        return json_response(200, b'{"status":"ok"}')

    async def _readyz(self) -> Response:
        """What the server depends on answers (readiness): 503 while anything does not."""
        ready, checks = await self.readiness.probe()
        body = {"status": "ready" if ready else "unavailable", "checks": checks}
        return json_response(200 if ready else 503, orjson.dumps(body))

    async def metrics(self) -> Response:
        registry = self.ops.registry
        assert registry is not None, "metrics are served only when kept"
        body = registry.render()
        return HttpResponse(200, [(b"content-type", METRICS_TYPE)], body)

    async def _authenticate(self, request: HttpRequest) -> Principal:
        """A known token that is refused (revoked, expired) also ends the sessions it opened."""
        try:
            return await _principal(self.authenticate(request))
        except HttpError as exc:
            token_id = getattr(exc, "token_id", None)
            if token_id is not None:
                await self.end_principal_sessions(token_id)
            raise

    # --- POST ------------------------------------------------------------------------------

    async def _post(self, request: HttpRequest, principal: Principal) -> Response:
        headers = request.headers
        _raise(transport.check_post_headers(headers.get("accept"), headers.get("content-type")))
        batch = _value(transport.read_messages(request.body))
        era = transport.choose_era(batch, headers)
        if request.facts is not None:
            _note_post(request.facts, batch, era)
        if era is Era.MODERN:
            return await self._post_modern(request, batch, principal)
        first = batch.first
        if isinstance(first, jsonrpc.Request) and first.method == "initialize":
            return await self._initialize(first, batch, principal, request.facts)
        session = await self._session(request, principal)
        version = _value(transport.header_version(headers.get("mcp-protocol-version")))
        _raise(
            transport.check_batch(batch, session.protocol_version if batch.is_batch else version)
        )
        changes = Changes(session, session.mark())
        try:
            return await self._post_in_session(request, batch, session, principal, changes)
        finally:
            await self._settle(changes)

    async def _settle(self, changes: Changes) -> None:
        """Saves what the request changed in its session so far, once: before its answer is
        sent (on a stream, the answer ends the response), else as the request ends."""
        session, before = changes.session, changes.mark
        if session.mark() != before:
            changes.mark = session.mark()
            await self._save(session, before)

    async def _save(self, session: Session, before: Mark) -> None:
        """Records what a request changed in its session.  The answer may be on its way, so
        a shared store that cannot take it is logged, not answered again."""
        with anyio.CancelScope(shield=True):
            try:
                await self.sessions.save(session, before)
                if self.bus.shared:
                    # Every replica reads the session again before the client is answered;
                    # one holding its GET stream filters announcements by its subscriptions.
                    await self.bus.publish({"t": "changed", "s": session.id}, confirm=True)
            except SharedStateUnavailable:
                log.warning("a change to session %s was not kept", session.id[:8])

    async def _initialize(
        self,
        message: jsonrpc.Request,
        batch: transport.Batch,
        principal: Principal,
        facts: RequestFacts | None,
    ) -> Response:
        if batch.is_batch:
            raise HttpError(
                400,
                "Invalid Request: initialize must not be part of a batch.",
                rpc_code=INVALID_REQUEST,
            )
        too_large = client_description_problem(message.params)
        if too_large is not None:
            return json_response(200, jsonrpc.encode_error(message.id, too_large))
        session = await self._new_session(message.params, principal)
        if facts is not None:
            facts["session"] = session.id[:8]
        ctx = self._session_context(session, principal, DetachedPeer(), message, facts)
        body = await self._answer(message, ctx)
        return json_response(200, body, [(b"mcp-session-id", session.id.encode())])

    async def _new_session(self, params: dict[str, Any], principal: Principal) -> Session:
        session = Session(
            id=new_session_id(),
            owner=principal.token_id,
            protocol_version=negotiate(params.get("protocolVersion")),
            client_capabilities=_dict(params.get("capabilities")),
            client_info=_dict(params.get("clientInfo")),
            last_seen=time.monotonic(),
        )
        await self.sessions.add(session)
        await self._told()  # of the sessions evicted to make room
        return self._attach(session)

    async def _session(self, request: HttpRequest, principal: Principal) -> Session:
        session_id = request.header("mcp-session-id")
        if session_id is None:
            raise HttpError(
                400,
                "Bad Request: the Mcp-Session-Id header is required; send "
                "initialize first to get one.",
                rpc_code=INVALID_REQUEST,
            )
        session = await self.sessions.get(session_id, time.monotonic())
        # A session presented by a principal other than its creator is, to that principal,
        # unknown: 404, never 403, so session ids leak nothing.
        if session is None or session.owner != principal.token_id:
            raise HttpError(
                404,
                "Session not found: it ended or expired; send initialize to start a new session.",
                rpc_code=INVALID_REQUEST,
            )
        if request.facts is not None:
            request.facts["session"] = session_id[:8]
        return self._attach(session)

    async def _post_in_session(
        self,
        request: HttpRequest,
        batch: transport.Batch,
        session: Session,
        principal: Principal,
        changes: Changes,
    ) -> Response:
        for message in batch.messages:
            forward = self._absorb(message, session)
            if forward is not None:
                self._tell(forward)
        calls = [m for m in batch.messages if isinstance(m, ANSWERABLE)]
        if not calls:
            return HttpResponse(202, [])
        if batch.is_batch:
            return await self._answer_batch(request, calls, session, principal)
        message = calls[0]
        if isinstance(message, jsonrpc.Invalid):
            return json_response(400, jsonrpc.encode_error(message.id, message.error))
        _raise(self.engine.step_up(message.method, message.params, principal))
        session.advance(SessionEvent.REQUEST)
        prime = has_priming_events(session.protocol_version)
        peer = self._inline_peer(request, session.runtime, prime)
        ctx = self._session_context(session, principal, peer, message, request.facts)
        return await self._answer_inline(request, message, ctx, peer, session.runtime, changes)

    @staticmethod
    def _absorb(message: jsonrpc.Message, session: Session) -> Message | None:
        """Applies a response or notification to the session; what the other replicas must
        be told when the call it concerns may run on one of them."""
        runtime: SessionRuntime = session.runtime
        if isinstance(message, jsonrpc.Response):
            if not runtime.resolve(message):
                answer = {"id": message.id, "result": message.result, "error": message.error}
                return {"t": "answer", "s": session.id, "m": answer}
        elif isinstance(message, jsonrpc.Notification):
            if message.method == "notifications/initialized":
                session.advance(SessionEvent.INITIALIZED)
            elif message.method == "notifications/cancelled":
                request_id = message.params.get("requestId")
                if not runtime.cancel(request_id):
                    return {"t": "cancel", "s": session.id, "id": request_id}
        return None

    async def _answer_batch(
        self,
        request: HttpRequest,
        calls: list[jsonrpc.Request | jsonrpc.Invalid],
        session: Session,
        principal: Principal,
    ) -> Response:
        """2025-03-26 batches are answered with a JSON array, one response per request.  Each
        request counts against the token's rate limit as if sent alone: the HTTP request paid
        for the first, and each further one is authenticated again, which takes its share; one
        refused gets the refusal's message in its slot, and the reply its Retry-After.  Between
        requests the connection lets the others run, so that a long batch holds up no one."""
        replies: list[bytes] = []
        refused: HttpError | None = None
        paid = False
        for message in calls:
            if isinstance(message, jsonrpc.Invalid):
                replies.append(jsonrpc.encode_error(message.id, message.error))
                continue
            if paid:
                await anyio.lowlevel.checkpoint()
                refusal = await self._charge(request)
                if refusal is not None:
                    refused = refusal
                    replies.append(_refused_slot(message, refusal))
                    continue
            paid = True
            # A batch is answered as one JSON array: its calls have no stream to go on.
            ctx = self._session_context(session, principal, DetachedPeer(), message, request.facts)
            replies.append(await self._answer(message, ctx))
        headers = [(k.encode(), v.encode()) for k, v in refused.headers] if refused else []
        return json_response(200, b"[" + b",".join(replies) + b"]", headers)

    async def _charge(self, request: HttpRequest) -> HttpError | None:
        """Authenticates a batched request once more, which takes its share of the token's
        rate limit; the refusal, if the limit (or the token's state) refuses it."""
        try:
            await _principal(self.authenticate(request))
        except HttpError as exc:
            return exc
        return None

    def _session_context(
        self,
        session: Session,
        principal: Principal,
        peer: Peer,
        message: jsonrpc.Request,
        facts: RequestFacts | None,
    ) -> CallContext:
        return CallContext(
            era=Era.HANDSHAKE,
            protocol_version=session.protocol_version,
            principal=principal,
            peer=peer,
            client_capabilities=session.client_capabilities,
            client_info=session.client_info,
            log_level=session.log_level,
            progress_token=progress_token_of(message.params),
            session=session,
            announce=self.announce,
            facts=facts,
        )

    # --- answering -------------------------------------------------------------------------

    def _inline_peer(
        self, request: HttpRequest, runtime: SessionRuntime | None, prime: bool
    ) -> InlinePeer:
        assert request.channel is not None, "requests reach the service with a channel"
        limits = self.config.limits
        return InlinePeer(
            request.channel, runtime, prime, limits.sse_retry_ms, limits.sse_replay_events
        )

    async def _answer_inline(
        self,
        request: HttpRequest,
        message: jsonrpc.Request,
        ctx: CallContext,
        peer: InlinePeer,
        runtime: SessionRuntime | None,
        changes: Changes | None = None,
    ) -> Response:
        """Runs the handler in this connection's own task.  Handshake era: only
        notifications/cancelled stops it, a disconnect does not (2025-11-25 transports).
        Stateless era: the client going away cancels it (2026-07-28 transports)."""
        if runtime is not None and message.id in runtime.running:
            return await self._deliver(request, peer, _reused(message.id), modern=False)
        claim = await self._claim_call(message, ctx.principal)
        interrupt = CallInterrupt()
        try:
            if runtime is None:
                request.on_gone(interrupt.cancel)
            else:
                runtime.running[message.id] = interrupt
            answer = await interrupt.run(self._answer_coded(message, ctx))
        finally:
            if runtime is not None:
                runtime.running.pop(message.id, None)
            await self._release_call(claim)
        if answer is None:
            await peer.abandon()
            return STREAMED
        if changes is not None:
            await self._settle(changes)
        return await self._deliver(request, peer, answer, modern=runtime is None)

    async def _claim_call(self, message: jsonrpc.Request, principal: Principal) -> str | None:
        """At most `max_calls_per_token` tool calls of one token run at once, on every
        replica together; the next one is refused with 429 rather than queued behind them.
        Returns the key to release."""
        if message.method != "tools/call":
            return None
        key = principal.token_id or ""
        if not await self.quotas.claim(key, self.config.limits.max_calls_per_token):
            raise HttpError(
                429,
                "Too many concurrent tool calls for this token; retry after "
                "the seconds in Retry-After.",
                (("retry-after", "1"),),
            )
        return key

    async def _release_call(self, key: str | None) -> None:
        if key is not None:
            await self.quotas.release(key)

    async def _deliver(
        self,
        request: HttpRequest,
        peer: InlinePeer,
        answer: tuple[bytes, int | None],
        modern: bool,
    ) -> Response:
        """A request that produced only its response gets JSON, unless the client prefers a
        stream; one that produced anything else first (progress, logs, server requests) is
        already an SSE stream, which the response ends."""
        body, code = answer
        if await peer.conclude(body, as_stream=_prefers_stream(request)):
            return STREAMED
        return json_response(modern_status(code) if modern else 200, body)

    async def _answer(self, message: jsonrpc.Request, ctx: CallContext) -> bytes:
        return (await self._answer_coded(message, ctx))[0]

    async def _answer_coded(
        self, message: jsonrpc.Request, ctx: CallContext
    ) -> tuple[bytes, int | None]:
        if self.tracing is None:
            return await self._answered(message, ctx)
        with self.tracing.request(message.method, message.id, message.params, ctx) as span:
            body, code = await self._answered(message, ctx)
            if code is not None:
                self.tracing.failed(span, code)
            return body, code

    async def _answered(
        self, message: jsonrpc.Request, ctx: CallContext
    ) -> tuple[bytes, int | None]:
        """The boundary: a request always ends in exactly one JSON-RPC response, also when
        its result cannot be encoded."""
        try:
            result = await self.engine.call(message.method, message.params, ctx)
        except JsonRpcError as exc:
            return jsonrpc.encode_error(message.id, exc), exc.code
        except InputRequired as exc:
            state = input_required_result(exc, message.method, message.params, ctx, self.signer)
            result = self.engine.finish(state, ctx, cacheable=False)
        except Exception:
            log.exception("unhandled error in %s", message.method)
            return jsonrpc.encode_error(message.id, INTERNAL), INTERNAL_ERROR
        try:
            return self._encode_result(message, result, ctx), None
        except Exception:
            log.exception("unencodable result from %s", message.method)
            return jsonrpc.encode_error(message.id, INTERNAL), INTERNAL_ERROR

    def _encode_result(
        self, message: jsonrpc.Request, result: dict[str, Any], ctx: CallContext
    ) -> bytes:
        body = {"jsonrpc": "2.0", "id": message.id, "result": result}
        return orjson.dumps(body, default=self.engine.encode_default(ctx))

    async def _sse_body(
        self, stream: EventStream, after: int, prime: bool, with_ids: bool = True
    ) -> AsyncIterator[bytes]:
        limits = self.config.limits
        if prime:
            if self.events.shared:
                await self.events.settle()  # the stream's opening is kept first
            yield sse.priming(stream.event_id(after), limits.sse_retry_ms)
        async for item in stream.follow(after, limits.sse_keepalive):
            yield _sse_chunk(stream, item, with_ids)

    # --- GET and DELETE --------------------------------------------------------------------

    async def _get(self, request: HttpRequest, principal: Principal) -> Response:
        _raise(_stateless_refusal(request))
        _raise(transport.check_get_headers(request.header("accept")))
        session = await self._session(request, principal)
        runtime: SessionRuntime = session.runtime
        key = self._stream_owner(principal)
        last = request.header("last-event-id")
        if last is not None:
            return self._held(key, await self._resume(runtime, last))
        stream = runtime.open_standalone()
        if stream is None:
            raise HttpError(
                409,
                "Conflict: this session already has an open GET stream.",
                rpc_code=INVALID_REQUEST,
            )
        prime = has_priming_events(session.protocol_version)
        return self._held(key, sse_response(self._standalone_body(runtime, stream, prime)))

    async def _standalone_body(
        self, runtime: SessionRuntime, stream: EventStream, prime: bool
    ) -> AsyncIterator[bytes]:
        """New messages only; what was published while nobody listened is reached through
        Last-Event-ID.  The count lets a client reconnect once its connection is gone."""
        runtime.standalone_listeners += 1
        try:
            async for chunk in self._sse_body(stream, stream.seq, prime):
                yield chunk
        finally:
            runtime.standalone_listeners -= 1

    async def _resume(self, runtime: SessionRuntime, last_event_id: str) -> StreamingResponse:
        """Replay only the stream the event id belongs to (transports, "Resumability"): one
        of this replica's, or one another replica kept in the shared log."""
        parsed = split_event_id(last_event_id)
        stream = runtime.streams.get(parsed[0]) if parsed else None
        if stream is not None and parsed is not None:
            return sse_response(self._sse_body(stream, parsed[1], prime=False))
        if parsed is not None and await self.events.exists(runtime.session_id, parsed[0]):
            return sse_response(self._logged_body(runtime.session_id, *parsed))
        raise HttpError(
            404,
            "Not found: Last-Event-ID names no stream this session can resume.",
            rpc_code=INVALID_REQUEST,
        )

    async def _logged_body(
        self, session_id: str, stream_id: str, after: int
    ) -> AsyncIterator[bytes]:
        keepalive = self.config.limits.sse_keepalive
        entries = self.events.follow(session_id, stream_id, after, keepalive)
        try:
            async for entry in entries:
                if entry is None:
                    yield sse.KEEPALIVE
                else:
                    yield sse.event(entry.data, f"{stream_id}_{entry.seq}")
        except SharedStateUnavailable:
            return  # the response ends; the client resumes again from its last event

    async def _delete(self, request: HttpRequest, principal: Principal) -> Response:
        _raise(_stateless_refusal(request))
        session = await self._session(request, principal)
        await self.sessions.remove(session.id)
        await self._told()
        return HttpResponse(200, [])

    # --- the stateless era -----------------------------------------------------------------

    async def _post_modern(
        self, request: HttpRequest, batch: transport.Batch, principal: Principal
    ) -> Response:
        if batch.is_batch:
            raise HttpError(
                400,
                "Invalid Request: the stateless protocol takes one message per request.",
                rpc_code=INVALID_REQUEST,
            )
        message = batch.first
        if isinstance(message, jsonrpc.Invalid):
            return json_response(400, jsonrpc.encode_error(message.id, message.error))
        if not isinstance(message, jsonrpc.Request):
            return HttpResponse(202, [])
        peer = self._inline_peer(request, None, prime=False)
        ctx = self._modern_context(message, principal, peer, request.facts)
        problem = self._modern_problem(message, request, ctx)
        if problem is not None:
            status = 404 if problem.code == METHOD_NOT_FOUND else 400
            return json_response(status, jsonrpc.encode_error(message.id, problem))
        if message.method == LISTEN:
            return self._listen(message, principal)
        _raise(self.engine.step_up(message.method, message.params, principal))
        return await self._answer_inline(request, message, ctx, peer, None)

    def _modern_problem(
        self, message: jsonrpc.Request, request: HttpRequest, ctx: CallContext
    ) -> JsonRpcError | None:
        """The 2026-07-28 validation order: version header and required _meta, routing
        headers, method, then a retry's requestState and inputResponses."""
        version = transport.modern_version(message, request.header("mcp-protocol-version"))
        if isinstance(version, JsonRpcError):
            return version
        return (
            transport.check_routing_headers(message, request.headers)
            or transport.check_log_level(message)
            or self._param_header_problem(message, request)
            or self._method_problem(message.method)
            or self.signer.restore(message.method, message.params, ctx)
        )

    def _param_header_problem(
        self, message: jsonrpc.Request, request: HttpRequest
    ) -> JsonRpcError | None:
        if message.method != "tools/call":
            return None
        tool = self.engine.catalogue.tools.get(message.params.get("name"))  # type: ignore[arg-type]
        if tool is None:
            return None
        return transport.check_param_headers(
            tool.input_schema, message.params.get("arguments"), request.headers
        )

    def _method_problem(self, method: str) -> JsonRpcError | None:
        if method == LISTEN:
            return None
        try:
            self.engine.method(method, Era.MODERN)
        except JsonRpcError as exc:
            return exc
        return None

    def _modern_context(
        self,
        message: jsonrpc.Request,
        principal: Principal,
        peer: Peer,
        facts: RequestFacts | None,
    ) -> CallContext:
        meta = transport.meta_of(message)
        level = meta.get(META_LOG_LEVEL)
        return CallContext(
            era=Era.MODERN,
            protocol_version=str(meta.get(META_PROTOCOL_VERSION)),
            principal=principal,
            peer=peer,
            client_capabilities=_dict(meta.get(META_CLIENT_CAPABILITIES)),
            client_info=_dict(meta.get(META_CLIENT_INFO)),
            log_level=level if isinstance(level, str) else None,
            progress_token=progress_token_of(message.params),
            announce=self.announce,
            facts=facts,
        )

    def announce(self, method: str, params: dict[str, Any]) -> None:
        """A server-wide change, here and on every other replica."""
        self._announce_here(method, params)
        self._tell({"t": "announce", "method": method, "params": params})

    def _announce_here(self, method: str, params: dict[str, Any]) -> None:
        """To stateless listeners by their filters, and to handshake-era sessions on their
        standalone GET stream (transports: unrelated messages go there)."""
        uri = params.get("uri")
        if method == "notifications/resources/updated" and isinstance(uri, str):
            self.listeners.resource_updated(uri)
        elif method in LIST_CHANGED_FLAGS:
            self.listeners.list_changed(LIST_CHANGED_FLAGS[method], method)
        for runtime in self.runtimes.values():
            if runtime.session is not None and _wants(runtime.session, method, uri):
                runtime.publish_unrelated(jsonrpc.encode_notification(method, params))

    def _listen(self, message: jsonrpc.Request, principal: Principal) -> Response:
        key = self._stream_owner(principal)
        listener = self.listeners.open(message)
        if isinstance(listener, JsonRpcError):
            return json_response(200, jsonrpc.encode_error(message.id, listener))
        return self._held(key, sse_response(self._listen_body(listener)))

    async def _listen_body(self, listener: Listener) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._sse_body(listener.stream, 0, prime=False, with_ids=False):
                yield chunk
        finally:
            self.listeners.close(listener)

    # --- long-lived streams, counted per token ----------------------------------------------

    def _stream_owner(self, principal: Principal) -> str:
        """The token's key, once it is known to have room for one more long-lived stream;
        the next is refused (as a concurrent call is) with 429."""
        key = principal.token_id or ""
        if self.streaming.get(key, 0) >= MAX_STREAMS_PER_TOKEN:
            raise HttpError(
                429,
                f"This token already has {MAX_STREAMS_PER_TOKEN} open streams (GET and "
                "subscriptions/listen); close one before opening another.",
                (("retry-after", "1"),),
            )
        return key

    def _held(self, key: str, response: StreamingResponse) -> StreamingResponse:
        """Counts the stream against its token until it ends, however it ends."""
        self.streaming.add(key)
        response.chunks = Counted(response.chunks, lambda: self.streaming.remove(key))
        return response


class Counted:
    """A response body that calls `release` once when it ends: run out, closed, or closed
    before it began (where an async generator's own `finally` would never run)."""

    def __init__(self, chunks: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        self.chunks = chunks
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> Counted:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self.chunks)
        except StopAsyncIteration:
            self._end()
            raise

    async def aclose(self) -> None:
        self._end()
        close = getattr(self.chunks, "aclose", None)
        if close is not None:
            await close()

    def _end(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


LIST_CHANGED_FLAGS = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}


def _wants(session: Session, method: str, uri: Any) -> bool:
    if method == "notifications/resources/updated":
        return uri in session.subscriptions
    return True


def _refused_slot(message: jsonrpc.Request, refusal: HttpError) -> bytes:
    """A batched request refused by the token's rate limit (or its authentication): the
    refusal's message, and its wait."""
    retry = dict(refusal.headers).get("retry-after")
    data = {"retryAfter": int(retry)} if retry else None
    return jsonrpc.encode_error(message.id, JsonRpcError(REFUSED, refusal.message, data))


def _stateless_refusal(request: HttpRequest) -> HttpError | None:
    """2026-07-28 "Earlier Streamable HTTP Revisions": GET and DELETE get 405 from a client
    that speaks the stateless revision."""
    if "mcp-session-id" in request.headers or not is_modern(request.header("mcp-protocol-version")):
        return None
    return HttpError(
        405,
        "Method not allowed: protocol 2026-07-28 uses POST only.",
        (("allow", "POST"),),
        rpc_code=INVALID_REQUEST,
    )


def _sse_chunk(stream: EventStream, item: StreamItem | None, with_ids: bool) -> bytes:
    if item is None:
        return sse.KEEPALIVE
    return sse.event(item.data, stream.event_id(item.seq) if with_ids else None)


def _prefers_stream(request: HttpRequest) -> bool:
    return transport.prefers_sse(request.header("accept"))


def _raise(error: HttpError | None) -> None:
    if error is not None:
        raise error


def _value(value: Any) -> Any:
    if isinstance(value, HttpError):
        raise value
    return value


def _response_of(answer: dict[str, Any]) -> jsonrpc.Response | None:
    """The client's response another replica received, as it was absorbed there."""
    request_id, error = answer.get("id"), answer.get("error")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None
    return jsonrpc.Response(request_id, answer.get("result"), _dict(error) if error else None)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def _principal(answer: Principal | Awaitable[Principal]) -> Principal:
    if isinstance(answer, Principal):
        return answer
    return await answer
