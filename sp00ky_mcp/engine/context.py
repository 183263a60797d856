"""What a method or tool handler sees of the request it serves.  Pure: the IO layer supplies a
`Peer` that actually delivers notifications and server-to-client requests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import MISSING_CAPABILITY, JsonRpcError, ToolError
from .versions import Era

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_SEVERITY = {name: rank for rank, name in enumerate(LOG_LEVELS)}


class Peer(Protocol):
    async def notify(self, method: str, params: dict[str, Any]) -> None: ...

    async def request(self, method: str, params: dict[str, Any]) -> Any: ...

    def interrupt(self) -> None: ...


def _no_announcement(method: str, params: dict[str, Any]) -> None:
    return None


class InputRequired(Exception):
    """A handler needs the client's answers to server-to-client requests (keyed by names the
    handler chooses) before it can finish.  In the stateless era this becomes an
    `input_required` result (MRTR) and the client retries; in the handshake era the engine
    sends the requests on the reply stream and runs the handler again with the answers.
    `state` is the handler's own round state, returned to it as `ctx.request_state`."""

    def __init__(self, requests: dict[str, dict[str, Any]], state: str | None = None) -> None:
        super().__init__(", ".join(requests))
        self.requests = requests
        self.state = state


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's user and scopes.  `scopes` None means no authentication
    (the loopback conformance profile), where every tool is visible."""

    token_id: str | None
    user_id: str | None
    scopes: frozenset[str] | None
    can_reveal: bool = False
    # The token's name, for logs (never its value).
    name: str | None = None
    # The tools this connection asked to be narrowed to (None: all its scopes allow), and a
    # sentence saying how it was narrowed, for the server's instructions.
    tools: frozenset[str] | None = None
    narrowed: str | None = None
    # A call that needs a scope the token lacks is refused at the HTTP level with a
    # challenge naming it (403 insufficient_scope), so that an OAuth client can ask the user
    # for it (MCP authorization, "Scope Challenge Handling"); otherwise it gets an error
    # result saying how to get the scope.
    step_up: bool = False


# No authentication: every tool is visible, and secret values stay masked (a program that wants
# them revealed to anonymous callers says so: `server.anonymous(reveal_secrets=True)`).
ANONYMOUS = Principal(token_id=None, user_id=None, scopes=None, can_reveal=False)


@dataclass(slots=True)
class CallContext:
    era: Era
    protocol_version: str
    principal: Principal
    peer: Peer
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    client_info: dict[str, Any] | None = None
    log_level: str | None = None
    progress_token: str | int | None = None
    session_id: str | None = None
    input_responses: dict[str, Any] = field(default_factory=dict)
    request_state: str | None = None
    session: Any = None
    # The tenant a product tool acted in, once resolved (for the audit log).
    tenant_id: str | None = None
    # What the request's access line will say (see `ops.RequestFacts`); None when not logged.
    facts: Any = None
    # Delivers a server-wide notification (list changed, resource updated) to the listeners.
    announce: Callable[[str, dict[str, Any]], None] = _no_announcement
    _inputs_asked: int = 0

    def supports(self, capability: str) -> bool:
        return capability in self.client_capabilities

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        if self.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.peer.notify("notifications/progress", params)

    def wants_log(self, level: str) -> bool:
        """Handshake era: everything until logging/setLevel says otherwise.  Modern era: only
        when the request named a level (2026-07-28 logging: absent level, no messages)."""
        threshold = self.log_level
        if threshold is None:
            return self.era is Era.HANDSHAKE
        return _SEVERITY[level] >= _SEVERITY[threshold]

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        if not self.wants_log(level):
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await self.peer.notify("notifications/message", params)

    async def ask(self, method: str, params: dict[str, Any]) -> Any:
        """A server-to-client request: sent on the stream in the handshake era; in the modern era
        the first call without an answer ends the round with `input_required`."""
        self.require_capability(_CAPABILITY_OF[method])
        if self.era is Era.HANDSHAKE:
            return await self.peer.request(method, params)
        self._inputs_asked += 1
        key = f"input-{self._inputs_asked}"
        if key in self.input_responses:
            return self.input_responses[key]
        raise InputRequired({key: {"method": method, "params": params}})

    def require_capability(self, capability: str) -> None:
        if self.supports(capability):
            return
        if self.era is Era.MODERN:
            raise JsonRpcError(
                MISSING_CAPABILITY,
                f"This request needs the client's '{capability}' capability.",
                {"requiredCapabilities": {capability: {}}},
            )
        raise ToolError(
            f"This tool needs the client's '{capability}' capability, which the "
            "client did not declare in initialize."
        )

    async def elicit(self, message: str, requested_schema: dict[str, Any]) -> Any:
        params: dict[str, Any] = {"message": message, "requestedSchema": requested_schema}
        if self.protocol_version not in ("2025-06-18", "2025-03-26"):
            params = {"mode": "form", **params}
        return await self.ask("elicitation/create", params)

    async def sample(self, params: dict[str, Any]) -> Any:
        return await self.ask("sampling/createMessage", params)


_CAPABILITY_OF = {
    "elicitation/create": "elicitation",
    "sampling/createMessage": "sampling",
    "roots/list": "roots",
}


def progress_token_of(params: dict[str, Any]) -> str | int | None:
    """The request's progress token (basic/utilities/progress), if it gave a valid one."""
    meta = params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None
