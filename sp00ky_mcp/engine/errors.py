"""The error family.  Each error knows how it goes on the wire, so one boundary can write it.

- `HttpError`: rejected before any JSON-RPC is read (status, headers, a plain-text body).
- `JsonRpcError`: a JSON-RPC error object (JSON-RPC 2.0 section 5.1).
- `ToolError`: a tool that ran and failed; becomes an `isError: true` result so that the model
  can correct itself (MCP tools spec, "Error Handling").
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RESOURCE_NOT_FOUND = -32002
HEADER_MISMATCH = -32020
MISSING_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022
# A request refused by the token's rate limit (or its authentication) where no HTTP status can
# say so (a batch's slot, stdio): JSON-RPC 2.0 section 5.1 leaves -32000 to -32099 to the
# implementation for server errors.
REFUSED = -32000


class HttpError(Exception):
    """A request refused at the HTTP level."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
        rpc_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.rpc_code = rpc_code


class JsonRpcError(Exception):
    """A JSON-RPC error response; `message` is client-facing and must say what to fix."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_wire(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ToolError(Exception):
    """A tool-level failure reported to the model as an `isError` result."""

    def __init__(self, message: str, structured: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.structured = structured


# How much of a client's own string an error message quotes: enough to recognise it (a name,
# a URI); a name of megabytes echoed whole would only be kept (an SSE reply is kept for
# replay) and sent back.
QUOTED_CHARS = 100


def quoted(value: object) -> str:
    """A client's value as a message quotes it, cut short past QUOTED_CHARS: a string in
    quotes, anything else as Python writes it (so `20260728` reads as no string)."""
    if not isinstance(value, str):
        shown = repr(value)
        return shown if len(shown) <= QUOTED_CHARS else f"{shown[:QUOTED_CHARS]}…"
    return f"'{value}'" if len(value) <= QUOTED_CHARS else f"'{value[:QUOTED_CHARS]}…'"


def invalid_params(message: str, data: Any = None) -> JsonRpcError:
    return JsonRpcError(INVALID_PARAMS, message, data)


class SharedStateUnavailable(HttpError):
    """The state that replicas share (sessions, their events) cannot be reached: the request
    that needs it is refused with 503, which clients retry, and nothing was done."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "The server's shared session state cannot be reached right now, so nothing was "
            "done; retry after the seconds in Retry-After.",
            (("retry-after", "1"),),
            rpc_code=INTERNAL_ERROR,
        )


# A request whose id a request of its session still runs under: its cancellation could not
# tell the two apart (basic/index, "Requests": an id is never reused in a session).
REUSED_ID = JsonRpcError(
    INVALID_REQUEST,
    "Invalid Request: a request with this id is still running in this session; give each "
    "request an id of its own.",
)
