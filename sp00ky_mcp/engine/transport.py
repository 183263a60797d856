"""Streamable HTTP decisions.  Pure: each check takes what it needs and returns a value, either
None (passed) or an `HttpError` to answer with; the service writes whatever is decided.

Sections cited are from the transports page of the revision named.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from . import jsonrpc
from .context import LOG_LEVELS
from .errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    UNSUPPORTED_VERSION,
    HttpError,
    JsonRpcError,
    quoted,
)
from .versions import (
    ASSUMED_WITHOUT_HEADER,
    HANDSHAKE_VERSIONS,
    META_CLIENT_CAPABILITIES,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
    SUPPORTED_VERSIONS,
    Era,
    batches_allowed,
)

JSON = "application/json"
SSE = "text/event-stream"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# A 2025-03-26 batch is answered call after call in one response: its size is bounded so that
# one request cannot hold a connection (and the token's rate budget) for thousands of calls.
MAX_BATCH = 100


def allowed_hosts(
    configured: Iterable[str], bind_host: str, public_url: str | None
) -> frozenset[str]:
    """Host names a request may address: loopback names when bound to loopback, plus the
    public URL's host and any configured names (DNS-rebinding protection, 2025-06-18
    "Security Warning": servers MUST validate the Origin header)."""
    hosts = {h.lower() for h in configured}
    if bind_host in LOOPBACK_HOSTS or bind_host.startswith("127."):
        hosts.update(LOOPBACK_HOSTS)
    elif bind_host not in ("0.0.0.0", "::"):
        hosts.add(bind_host.lower())
    if public_url:
        hosts.add((urlsplit(public_url).hostname or "").lower())
    return frozenset(hosts)


@lru_cache(maxsize=256)
def host_name(value: str) -> str:
    """The host part of a Host header or an origin's authority, without the port."""
    if value.startswith("["):
        return value[1 : value.find("]")].lower() if "]" in value else value.lower()
    return value.rsplit(":", 1)[0].lower() if value.count(":") == 1 else value.lower()


def check_host(host: str | None, allowed: frozenset[str]) -> HttpError | None:
    if not allowed:
        return None
    if host is None or host_name(host) not in allowed:
        return HttpError(
            421,
            "Misdirected request: the Host header names a host this server "
            "does not serve; add it with --allowed-host.",
        )
    return None


def check_origin(
    origin: str | None, hosts: frozenset[str], origins: frozenset[str]
) -> HttpError | None:
    """A browser sends Origin; an Origin that is neither an allowed origin nor one of our own
    hosts is a DNS-rebinding attempt and gets 403 (transports, "Security Warning")."""
    if origin is None or origin.rstrip("/") in origins:
        return None
    if _origin_host(origin) in hosts:
        return None
    return HttpError(403, "Forbidden: this Origin is not allowed; add it with --allowed-origin.")


def _origin_host(origin: str) -> str | None:
    """The host of an http(s) Origin; None for any other, or one that is not a URL at all
    (`http://[::1`, which `urlsplit` refuses)."""
    try:
        parts = urlsplit(origin)
        hostname = parts.hostname
    except ValueError:
        return None
    return hostname.lower() if parts.scheme in ("http", "https") and hostname else None


@lru_cache(maxsize=256)
def media_types(header: str | None) -> frozenset[str]:
    """The media types listed, leaving out those refused with q=0 (RFC 9110 section 12.4.2)."""
    if not header:
        return frozenset()
    return frozenset(kind for kind, q in _ranges(header) if q > 0)


def _ranges(header: str) -> list[tuple[str, float]]:
    ranges = []
    for part in header.split(","):
        kind, *parameters = (p.strip() for p in part.split(";"))
        q = next((p[2:] for p in parameters if p.lower().startswith("q=")), "1")
        try:
            ranges.append((kind.lower(), float(q)))
        except ValueError:
            ranges.append((kind.lower(), 0.0))
    return ranges


@lru_cache(maxsize=256)
def prefers_sse(header: str | None) -> bool:
    """Content negotiation (RFC 9110 section 12.5.1): a client that lists text/event-stream
    before application/json prefers a stream even for a plain reply."""
    if not header:
        return False
    ranked = [kind for kind, q in sorted(_ranges(header), key=lambda r: -r[1]) if q > 0]
    return SSE in ranked and (JSON not in ranked or ranked.index(SSE) < ranked.index(JSON))


@lru_cache(maxsize=256)
def accepts(header: str | None, wanted: str) -> bool:
    types = media_types(header)
    major = wanted.split("/", 1)[0]
    return bool(types & {wanted, f"{major}/*", "*/*"})


def check_post_headers(accept: str | None, content_type: str | None) -> HttpError | None:
    """The client MUST list both application/json and text/event-stream in Accept
    ("Sending Messages to the Server", item 2) and send a JSON body."""
    if not (accepts(accept, JSON) and accepts(accept, SSE)):
        return HttpError(
            406,
            "Not Acceptable: the Accept header must list both "
            "application/json and text/event-stream.",
            rpc_code=INVALID_REQUEST,
        )
    if JSON not in media_types(content_type):
        return HttpError(
            415,
            "Unsupported Media Type: send the body as application/json.",
            rpc_code=INVALID_REQUEST,
        )
    return None


def check_get_headers(accept: str | None) -> HttpError | None:
    if not accepts(accept, SSE):
        return HttpError(
            406, "Not Acceptable: a GET must accept text/event-stream.", rpc_code=INVALID_REQUEST
        )
    return None


def header_version(value: str | None) -> str | HttpError:
    """2025-06-18 "Protocol Version Header": absent means 2025-03-26; an unsupported value
    MUST get 400 Bad Request."""
    if value is None:
        return ASSUMED_WITHOUT_HEADER
    if value not in SUPPORTED_VERSIONS:
        return HttpError(
            400,
            f"Bad Request: unsupported MCP-Protocol-Version '{value}'; "
            f"supported: {', '.join(SUPPORTED_VERSIONS)}.",
            rpc_code=INVALID_REQUEST,
        )
    return value


@dataclass(frozen=True, slots=True)
class Batch:
    messages: tuple[jsonrpc.Message, ...]
    is_batch: bool

    @property
    def requests(self) -> tuple[jsonrpc.Request, ...]:
        return tuple(m for m in self.messages if isinstance(m, jsonrpc.Request))

    @property
    def first(self) -> jsonrpc.Message:
        return self.messages[0]


def read_messages(body: bytes) -> Batch | HttpError:
    try:
        decoded = jsonrpc.decode_json(body)
    except JsonRpcError as exc:
        return HttpError(400, exc.message, rpc_code=exc.code)
    if isinstance(decoded, list):
        if not decoded:
            return HttpError(400, "Invalid Request: an empty batch.", rpc_code=INVALID_REQUEST)
        if len(decoded) > MAX_BATCH:
            return HttpError(
                400,
                f"Invalid Request: a batch may hold at most {MAX_BATCH} messages; "
                "send the rest in another request.",
                rpc_code=INVALID_REQUEST,
            )
        return Batch(tuple(jsonrpc.classify(item) for item in decoded), True)
    return Batch((jsonrpc.classify(decoded),), False)


def meta_of(message: jsonrpc.Message) -> Mapping[str, Any]:
    params = getattr(message, "params", None)
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta if isinstance(meta, dict) else {}


def choose_era(batch: Batch, headers: Mapping[str, str]) -> Era:
    """Dual-era routing (versioning page, "dual-era server"): a session id means the handshake
    era; otherwise a request with `_meta` protocolVersion, or naming in its header a version
    that is not a handshake-era one, is served statelessly.  A legacy `initialize` carries
    neither, so it stays in the handshake era."""
    if "mcp-session-id" in headers or batch.is_batch:
        return Era.HANDSHAKE
    if META_PROTOCOL_VERSION in meta_of(batch.first):
        return Era.MODERN
    header = headers.get("mcp-protocol-version")
    if header is not None and header not in HANDSHAKE_VERSIONS:
        return Era.MODERN
    return Era.HANDSHAKE


def check_batch(batch: Batch, version: str) -> HttpError | None:
    if batch.is_batch and not batches_allowed(version):
        return HttpError(
            400,
            "Invalid Request: JSON-RPC batches are not supported by protocol "
            f"version {version}; send one message per request.",
            rpc_code=INVALID_REQUEST,
        )
    return None


def unsupported_version(requested: Any) -> JsonRpcError:
    """Lists every version we speak, legacy ones included, so that a dual-era client knows it
    may fall back to initialize (versioning page, compatibility matrix)."""
    return JsonRpcError(
        UNSUPPORTED_VERSION,
        f"Unsupported protocol version: {requested!r}; use one of the supported versions.",
        {"supported": list(SUPPORTED_VERSIONS), "requested": requested},
    )


def modern_version(message: jsonrpc.Message, header: str | None) -> str | JsonRpcError:
    """2026-07-28 "Request Metadata": the header is required; `_meta` must carry the version
    and the client capabilities; the two versions must agree; and we must serve it (-32022)."""
    meta = meta_of(message)
    requested = meta.get(META_PROTOCOL_VERSION)
    if header is None:
        return _mismatch("the MCP-Protocol-Version header is required")
    if requested is None or not isinstance(meta.get(META_CLIENT_CAPABILITIES), dict):
        return JsonRpcError(
            INVALID_PARAMS,
            "Invalid params: _meta must carry "
            f"'{META_PROTOCOL_VERSION}' and '{META_CLIENT_CAPABILITIES}' "
            "(an object, {} for none).",
        )
    if header != requested:
        return _mismatch(
            f"MCP-Protocol-Version '{header}' does not match the _meta protocol "
            f"version {quoted(requested)}"
        )
    if requested not in MODERN_VERSIONS:
        return unsupported_version(requested)
    return str(requested)


NAME_FIELDS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_B64_PREFIX, _B64_SUFFIX = "=?base64?", "?="


def decode_header_value(value: str) -> str | None:
    """2026-07-28 "Value Encoding": values that are not plain ASCII travel as
    `=?base64?<UTF-8 as base64>?=`; None when the value cannot be decoded."""
    framed = len(value) >= len(_B64_PREFIX) + len(_B64_SUFFIX)
    if not (framed and value.startswith(_B64_PREFIX) and value.endswith(_B64_SUFFIX)):
        return value
    try:
        raw = base64.b64decode(value[len(_B64_PREFIX) : -len(_B64_SUFFIX)], validate=True)
        return raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def check_routing_headers(
    message: jsonrpc.Request, headers: Mapping[str, str]
) -> JsonRpcError | None:
    """2026-07-28: Mcp-Method must equal the body's method and Mcp-Name its name or uri, so
    that intermediaries can route on headers without reading bodies."""
    sent = headers.get("mcp-method")
    if sent is None:
        return _mismatch("the Mcp-Method header is required")
    if sent != message.method:
        return _mismatch(f"Mcp-Method '{sent}' does not match the body's method")
    field = NAME_FIELDS.get(message.method)
    if field is None:
        return None
    name = headers.get("mcp-name")
    if name is None:
        return _mismatch(f"the Mcp-Name header is required for {message.method}")
    decoded = decode_header_value(name)
    if decoded is None or decoded != message.params.get(field):
        return _mismatch(f"Mcp-Name does not match the body's '{field}'")
    return None


def header_params(schema: Mapping[str, Any]) -> dict[str, str]:
    """Argument name -> header name for properties annotated with `x-mcp-header`."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {
        name: str(prop["x-mcp-header"])
        for name, prop in properties.items()
        if isinstance(prop, dict) and isinstance(prop.get("x-mcp-header"), str)
    }


def header_form(value: Any) -> str:
    """2026-07-28 "Value Encoding": booleans lowercase, integers in decimal, strings as-is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_param_headers(
    schema: Mapping[str, Any], arguments: Any, headers: Mapping[str, str]
) -> JsonRpcError | None:
    """Mcp-Param-{Name} must mirror each `x-mcp-header` argument that is present and not null,
    and must be absent otherwise (transports, "Custom Headers")."""
    given = arguments if isinstance(arguments, dict) else {}
    for argument, header in header_params(schema).items():
        sent = headers.get(f"mcp-param-{header.lower()}")
        value = given.get(argument)
        if value is None and sent is None:
            continue
        if sent is None:
            return _mismatch(f"the Mcp-Param-{header} header is required when '{argument}' is set")
        if not sent.isascii() or not sent.isprintable():
            return _mismatch(f"the Mcp-Param-{header} header has invalid characters")
        if value is None or decode_header_value(sent) != header_form(value):
            return _mismatch(f"Mcp-Param-{header} does not match the argument '{argument}'")
    return None


def _mismatch(reason: str) -> JsonRpcError:
    return JsonRpcError(HEADER_MISMATCH, f"Header mismatch: {reason}.")


def check_log_level(message: jsonrpc.Message) -> JsonRpcError | None:
    """2026-07-28 logging: an unrecognised `_meta` logLevel is invalid params."""
    level = meta_of(message).get(META_LOG_LEVEL)
    if level is None or level in LOG_LEVELS:
        return None
    return JsonRpcError(
        INVALID_PARAMS,
        f"Invalid params: '{META_LOG_LEVEL}' must be one of {', '.join(LOG_LEVELS)}.",
    )
