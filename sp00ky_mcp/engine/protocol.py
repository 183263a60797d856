"""MCP methods over JSON-RPC 2.0.  Pure: handlers take params and a `CallContext`, return a
result dict or raise a `JsonRpcError`; the transport decides how the reply travels.

Specification sections are cited per method (server/tools, server/resources, server/prompts,
server/utilities/completion, basic/lifecycle, basic/utilities/*).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .. import SERVER_NAME, __version__
from .catalogue import Catalogue, Prompt, ResourceReader, Tool, grants
from .context import LOG_LEVELS, CallContext, InputRequired, Principal
from .errors import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND,
    HttpError,
    JsonRpcError,
    ToolError,
    invalid_params,
    quoted,
)
from .redaction import encoder_default
from .uritemplate import match_template
from .versions import META_SERVER_INFO, SUPPORTED_VERSIONS, Era, negotiate

log = logging.getLogger("sp00ky_mcp.engine.protocol")

Result = dict[str, Any]
MethodHandler = Callable[["Engine", dict[str, Any], CallContext], Awaitable[Result]]
# Told of every tools/call once it ends: (ctx, tool, arguments, result or None, start time).
ToolObserver = Callable[[CallContext, Tool, dict[str, Any], "ToolResult | None", float], None]
PAGE_SIZE = 100
MAX_INPUT_ROUNDS = 10
# What one session may hold: resource URIs are short in practice (RFC 3986 sets no limit; 2048
# is the common practical one), and a client watches a handful of resources, not thousands.
MAX_URI_LENGTH = 2048
MAX_SUBSCRIPTIONS = 100
# A session keeps the client's capabilities and clientInfo for its lifetime: a few hundred
# bytes in practice, bounded so that a token's sessions cannot hold megabytes each.
MAX_CLIENT_DESCRIPTION_BYTES = 16 * 1024


def verdict(outcome: ToolResult | None) -> str:
    """A tool call's outcome in one word (audit records, logs, metrics): None is a call that
    raised."""
    return "exception" if outcome is None else ("error" if outcome.is_error else "ok")


@dataclass(frozen=True, slots=True)
class ToolResult:
    content: list[dict[str, Any]]
    structured: dict[str, Any] | None = None
    is_error: bool = False
    # `content` and `structured` encoded already, for a result served many times, and the
    # number of bytes that encoded form holds.
    encoded: tuple[orjson.Fragment, orjson.Fragment] | None = None
    encoded_size: int = 0


@dataclass(frozen=True, slots=True)
class Method:
    handler: MethodHandler
    eras: frozenset[Era]
    cacheable: bool = False


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def error_result(message: str, structured: dict[str, Any] | None = None) -> ToolResult:
    return ToolResult([text(message)], structured, is_error=True)


class Engine:
    def __init__(
        self,
        catalogue: Catalogue,
        instructions: Callable[[CallContext], str | None] | None = None,
        scope_hint: Callable[[str], str] | None = None,
        observer: ToolObserver | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.observer = observer
        self.server_info = {"name": SERVER_NAME, "version": __version__}
        self.instructions = instructions
        self.scope_hint = scope_hint or (lambda scope: f"This tool needs the '{scope}' scope.")
        # The HTTP refusal of a call that needs `scope`, for principals that `step_up`.
        self.scope_challenge: Callable[[str], HttpError] | None = None

    def step_up(
        self, method: str, params: dict[str, Any], principal: Principal
    ) -> HttpError | None:
        """The challenge for a tools/call whose tool needs a scope `principal` lacks, when
        its client can ask the user for more; None when the call may go on."""
        if not principal.step_up or self.scope_challenge is None or method != "tools/call":
            return None
        name = params.get("name")
        tool = self.catalogue.tools.get(name) if isinstance(name, str) else None
        if tool is None or tool.scope is None or grants(tool, principal.scopes):
            return None
        return self.scope_challenge(tool.scope)

    def method(self, name: str, era: Era) -> Method:
        spec = METHODS.get(name)
        if spec is None or era not in spec.eras:
            raise JsonRpcError(METHOD_NOT_FOUND, f"Method not found: {quoted(name)}.")
        return spec

    async def call(self, name: str, params: dict[str, Any], ctx: CallContext) -> Result:
        spec = self.method(name, ctx.era)
        for _ in range(MAX_INPUT_ROUNDS):
            try:
                result = await spec.handler(self, params, ctx)
            except InputRequired as exc:
                if ctx.era is Era.MODERN:
                    raise
                await self.fulfil(exc, ctx)
                continue
            return self.finish(result, ctx, spec.cacheable and not ctx.input_responses)
        return self.finish(too_many_rounds(name), ctx, cacheable=False)

    @staticmethod
    async def fulfil(exc: InputRequired, ctx: CallContext) -> None:
        """Handshake era: ask the client directly, then let the handler run again."""
        for key, request in exc.requests.items():
            ctx.input_responses[key] = await ctx.ask(request["method"], request.get("params", {}))
        ctx.request_state = exc.state

    def finish(self, result: Result, ctx: CallContext, cacheable: bool) -> Result:
        """Modern-era results carry `resultType`, cache hints and serverInfo (2026-07-28,
        basic/index "Results" and server/discover)."""
        if ctx.era is Era.MODERN:
            result.setdefault("resultType", "complete")
            if cacheable:
                result.setdefault("ttlMs", 0)
                result.setdefault("cacheScope", "private")
            meta = result.setdefault("_meta", {})
            meta[META_SERVER_INFO] = self.server_info
        return result

    def capabilities(self) -> dict[str, Any]:
        changes = self.catalogue.list_changed
        caps: dict[str, Any] = {"logging": {}, "tools": {"listChanged": changes}}
        if self.catalogue.prompts:
            caps["prompts"] = {"listChanged": changes}
        if self.catalogue.has_resources:
            caps["resources"] = {"subscribe": True, "listChanged": changes}
        if self.catalogue.prompts or self.catalogue.templates:
            caps["completions"] = {}
        return caps

    def encode_default(self, ctx: CallContext) -> Callable[[Any], Any]:
        return encoder_default(ctx.principal.can_reveal)


def too_many_rounds(method: str) -> Result:
    """A request that still wants client input after MAX_INPUT_ROUNDS rounds: a tool reports
    it in its result (server/tools, "Error Handling"), any other method with -32602."""
    message = (
        f"This request still needed client input after {MAX_INPUT_ROUNDS} rounds, the most "
        "one request may take; send it again and answer so that it can finish sooner."
    )
    if method == "tools/call":
        return tool_result_wire(error_result(message), encoder_default(False))
    raise invalid_params(message)


# --- lifecycle ---------------------------------------------------------------------------


def client_description_problem(params: dict[str, Any]) -> JsonRpcError | None:
    """Why initialize's capabilities and clientInfo are too large to keep, if they are."""
    described = [params.get("capabilities"), params.get("clientInfo")]
    if len(orjson.dumps(described)) <= MAX_CLIENT_DESCRIPTION_BYTES:
        return None
    return invalid_params(
        "'capabilities' and 'clientInfo' may take at most "
        f"{MAX_CLIENT_DESCRIPTION_BYTES // 1024} KiB of JSON together."
    )


async def initialize(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    result: Result = {
        "protocolVersion": negotiate(params.get("protocolVersion")),
        "capabilities": engine.capabilities(),
        "serverInfo": engine.server_info,
    }
    instructions = engine.instructions(ctx) if engine.instructions else None
    if instructions:
        result["instructions"] = instructions
    return result


async def discover(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    result: Result = {
        # A dual-era server lists every version it serves; -32022's `supported` is the same set.
        "supportedVersions": list(SUPPORTED_VERSIONS),
        "capabilities": engine.capabilities(),
    }
    instructions = engine.instructions(ctx) if engine.instructions else None
    if instructions:
        result["instructions"] = instructions
    return result


async def ping(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    return {}


async def set_level(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    level = params.get("level")
    if level not in LOG_LEVELS:
        raise invalid_params(f"'level' must be one of {', '.join(LOG_LEVELS)}.")
    ctx.log_level = level
    if ctx.session is not None:
        ctx.session.log_level = level
    return {}


# --- pagination --------------------------------------------------------------------------


def encode_cursor(kind: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, params: dict[str, Any]) -> int:
    cursor = params.get("cursor")
    if cursor is None:
        return 0
    try:
        padded = str(cursor) + "=" * (-len(str(cursor)) % 4)
        label, _, offset = base64.urlsafe_b64decode(padded).decode().partition(":")
        if label == kind and offset.isdigit():
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise invalid_params("Invalid cursor: pass back a nextCursor value exactly as received.")


def paginate(kind: str, items: Sequence[Any], params: dict[str, Any]) -> Result:
    offset = decode_cursor(kind, params)
    if offset > len(items):
        raise invalid_params("Invalid cursor: pass back a nextCursor value exactly as received.")
    page: Result = {kind: list(items[offset : offset + PAGE_SIZE])}
    if offset + PAGE_SIZE < len(items):
        page["nextCursor"] = encode_cursor(kind, offset + PAGE_SIZE)
    return page


# --- tools -------------------------------------------------------------------------------


async def list_tools(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    principal = ctx.principal
    listing = engine.catalogue.visible_tools(principal.scopes, principal.tools)
    if "cursor" not in params and len(listing) <= PAGE_SIZE:
        return {"tools": engine.catalogue.visible_tools_json(principal.scopes, principal.tools)}
    return paginate("tools", listing, params)


def find_tool(engine: Engine, params: dict[str, Any]) -> Tool:
    name = params.get("name")
    if not isinstance(name, str):
        raise invalid_params("'name' must be the name of a tool from tools/list.")
    tool = engine.catalogue.tools.get(name)
    if tool is None:
        raise invalid_params(
            f"Unknown tool: {quoted(name)}. Call tools/list to see the available tools."
        )
    return tool


async def call_tool(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    tool = find_tool(engine, params)
    arguments = params.get("arguments", {})
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise invalid_params("'arguments' must be an object.")
    started = time.perf_counter()
    outcome: ToolResult | None = None
    try:
        outcome = await run_tool(engine, tool, arguments, ctx)
    finally:
        if engine.observer is not None:
            engine.observer(ctx, tool, arguments, outcome, started)
    return tool_result_wire(outcome, engine.encode_default(ctx))


async def run_tool(
    engine: Engine, tool: Tool, arguments: dict[str, Any], ctx: CallContext
) -> ToolResult:
    only = ctx.principal.tools
    if only is not None and tool.name not in only:
        return error_result(
            f"The tool '{tool.name}' is not on this connection: it asked for fewer tools "
            f"({ctx.principal.narrowed}). Connect without that narrowing to use it."
        )
    if not grants(tool, ctx.principal.scopes):
        assert tool.scope is not None
        return error_result(engine.scope_hint(tool.scope))
    problem = tool.check_arguments(arguments, "") if arguments or tool.requires else None
    if problem is not None:
        return error_result(f"Invalid arguments for '{tool.name}': {problem}")
    try:
        return as_tool_result(await tool.handler(arguments, ctx))
    except ToolError as exc:
        return error_result(exc.message, exc.structured)


def as_tool_result(value: Any) -> ToolResult:
    if isinstance(value, InputRequired):
        raise value
    if isinstance(value, ToolResult):
        return value
    if isinstance(value, dict):
        return ToolResult([], value)
    if isinstance(value, str):
        return ToolResult([text(value)])
    raise TypeError(f"tool handler returned {type(value).__name__}")


def encoded_result(structured: dict[str, Any], default: Callable[[Any], Any]) -> ToolResult:
    """What `tool_result_wire` makes of `structured`, encoded once, for a result that is
    served many times.  Only the encoded form is kept, so what the result holds is its size."""
    encoded = orjson.dumps(structured, default=default)
    content = orjson.dumps([text(encoded.decode())])
    fragments = (orjson.Fragment(content), orjson.Fragment(encoded))
    return ToolResult([], None, encoded=fragments, encoded_size=len(content) + len(encoded))


def tool_result_wire(outcome: ToolResult, default: Callable[[Any], Any]) -> Result:
    """The structured result with a text mirror (server/tools, "Structured Content": a tool
    that returns structured content SHOULD also return it serialised in a TextContent block)."""
    if outcome.encoded is not None:
        content_bytes, structured_bytes = outcome.encoded
        return {
            "content": content_bytes,
            "isError": outcome.is_error,
            "structuredContent": structured_bytes,
        }
    content = outcome.content
    if outcome.structured is not None and not content:
        content = [text(orjson.dumps(outcome.structured, default=default).decode())]
    wire: Result = {"content": content, "isError": outcome.is_error}
    if outcome.structured is not None:
        wire["structuredContent"] = outcome.structured
    return wire


# --- resources ---------------------------------------------------------------------------


async def list_resources(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    items = [r.descriptor() for r in engine.catalogue.resources.values()]
    return paginate("resources", items, params)


async def list_templates(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    items = [t.descriptor() for t in engine.catalogue.templates]
    return paginate("resourceTemplates", items, params)


def require_uri(params: dict[str, Any]) -> str:
    uri = params.get("uri")
    if not isinstance(uri, str) or not uri:
        raise invalid_params("'uri' must be a resource URI from resources/list.")
    if len(uri) > MAX_URI_LENGTH:
        raise invalid_params(f"'uri' may be at most {MAX_URI_LENGTH} characters long.")
    return uri


def find_reader(
    engine: Engine, uri: str, ctx: CallContext
) -> tuple[ResourceReader, dict[str, str]]:
    """The reader of a resource the server serves at `uri`, and the template's variables."""
    resource = engine.catalogue.resources.get(uri)
    if resource is not None:
        return resource.reader, {}
    for template in engine.catalogue.templates:
        variables = match_template(template.uri_template, uri)
        if variables is not None:
            return template.reader, variables
    # 2026-07-28 server/resources: not found is -32602 there; earlier revisions use -32002.
    code = INVALID_PARAMS if ctx.era is Era.MODERN else RESOURCE_NOT_FOUND
    raise JsonRpcError(code, f"Resource not found: {quoted(uri)}.", {"uri": uri})


async def read_resource(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    uri = require_uri(params)
    reader, variables = find_reader(engine, uri, ctx)
    return {"contents": await reader(uri, variables, ctx)}


async def subscribe(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    """Only a resource the server serves can be subscribed to (server/resources, "Error
    Handling": -32002 for an unknown resource), and a session holds a bounded number."""
    uri = require_uri(params)
    find_reader(engine, uri, ctx)
    held = ctx.session.subscriptions if ctx.session is not None else None
    if held is None or uri in held:
        return {}
    if len(held) >= MAX_SUBSCRIPTIONS:
        raise invalid_params(
            f"This session already holds {MAX_SUBSCRIPTIONS} resource subscriptions; "
            "unsubscribe from one before subscribing to another."
        )
    held.add(uri)
    return {}


async def unsubscribe(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    uri = require_uri(params)
    if ctx.session is not None:
        ctx.session.subscriptions.discard(uri)
    return {}


# --- prompts -----------------------------------------------------------------------------


async def list_prompts(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    items = [p.descriptor() for p in engine.catalogue.prompts.values()]
    return paginate("prompts", items, params)


def find_prompt(engine: Engine, name: Any) -> Prompt:
    prompt = engine.catalogue.prompts.get(name) if isinstance(name, str) else None
    if prompt is None:
        raise invalid_params(
            f"Unknown prompt: {quoted(name)}. Call prompts/list to see the prompts."
        )
    return prompt


async def get_prompt(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    prompt = find_prompt(engine, params.get("name"))
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict) or not all(isinstance(v, str) for v in arguments.values()):
        raise invalid_params("'arguments' must be an object of string values.")
    for argument in prompt.arguments:
        if argument.required and argument.name not in arguments:
            raise invalid_params(f"Missing required argument '{argument.name}'.")
    return await prompt.renderer(arguments, ctx)


# --- completion --------------------------------------------------------------------------


async def complete(engine: Engine, params: dict[str, Any], ctx: CallContext) -> Result:
    ref, argument = params.get("ref"), params.get("argument")
    if not isinstance(ref, dict) or not isinstance(argument, dict):
        raise invalid_params("'ref' and 'argument' must be objects.")
    name, value = argument.get("name"), argument.get("value", "")
    if not isinstance(name, str) or not isinstance(value, str):
        raise invalid_params("'argument' needs a string 'name' and a string 'value'.")
    context = params.get("context") or {}
    known = context.get("arguments") or {} if isinstance(context, dict) else {}
    values = (
        completer_for(engine, ref, name)(value, known) if completer_for(engine, ref, name) else []
    )
    return {
        "completion": {"values": values[:100], "total": len(values), "hasMore": len(values) > 100}
    }


def completer_for(engine: Engine, ref: dict[str, Any], name: str) -> Any:
    if ref.get("type") == "ref/prompt":
        prompt = find_prompt(engine, ref.get("name"))
        return next((a.completer for a in prompt.arguments if a.name == name), None)
    if ref.get("type") == "ref/resource":
        for template in engine.catalogue.templates:
            if template.uri_template == ref.get("uri"):
                return template.completers.get(name)
        raise invalid_params(f"Unknown resource template: '{ref.get('uri')}'.")
    raise invalid_params("'ref.type' must be 'ref/prompt' or 'ref/resource'.")


BOTH = frozenset(Era)
HANDSHAKE_ONLY = frozenset({Era.HANDSHAKE})
MODERN_ONLY = frozenset({Era.MODERN})

METHODS: dict[str, Method] = {
    "initialize": Method(initialize, HANDSHAKE_ONLY),
    "server/discover": Method(discover, MODERN_ONLY, cacheable=True),
    "ping": Method(ping, HANDSHAKE_ONLY),
    "logging/setLevel": Method(set_level, HANDSHAKE_ONLY),
    "tools/list": Method(list_tools, BOTH, cacheable=True),
    "tools/call": Method(call_tool, BOTH),
    "resources/list": Method(list_resources, BOTH, cacheable=True),
    "resources/templates/list": Method(list_templates, BOTH, cacheable=True),
    "resources/read": Method(read_resource, BOTH, cacheable=True),
    "resources/subscribe": Method(subscribe, HANDSHAKE_ONLY),
    "resources/unsubscribe": Method(unsubscribe, HANDSHAKE_ONLY),
    "prompts/list": Method(list_prompts, BOTH, cacheable=True),
    "prompts/get": Method(get_prompt, BOTH),
    "completion/complete": Method(complete, BOTH),
}

__all__ = ["INVALID_PARAMS", "METHODS", "Engine", "ToolResult"]
