"""JSON-RPC 2.0 framing: decode a body into messages, encode replies.  Pure: no IO.

Spec: https://www.jsonrpc.org/specification sections 4 (request object), 5 (response object)
and 6 (batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import INVALID_REQUEST, PARSE_ERROR, JsonRpcError

RequestId = str | int


@dataclass(frozen=True, slots=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Response:
    """A client's reply to a server-initiated request (result or error)."""

    id: RequestId
    result: Any
    error: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Invalid:
    """A message that could not be accepted; `id` is echoed when it could be read (section 5)."""

    id: RequestId | None
    error: JsonRpcError


Message = Request | Notification | Response | Invalid


# How deep a request's arrays and objects may nest.  What a client sends is written again
# (a signed request state holds its answers; the session keeps its description), and orjson
# writes at most 254 levels: a value that could not be written back is refused on the way in.
MAX_DEPTH = 128


def decode_json(body: bytes) -> Any:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise JsonRpcError(
            PARSE_ERROR, "Parse error: the request body is not valid JSON."
        ) from None
    # Counting brackets is a fast bound on the depth: only a body with many needs the walk.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and too_deep(value, MAX_DEPTH):
        raise JsonRpcError(
            INVALID_REQUEST,
            f"Invalid Request: arrays and objects may nest at most {MAX_DEPTH} levels deep; "
            "send a flatter body.",
        )
    return value


# orjson writes at most this many levels of arrays and objects (its recursion limit).
ORJSON_DEPTH = 254


def too_deep(value: Any, limit: int) -> bool:
    """Whether arrays and objects in `value` nest more than `limit` levels (`{}` is one).

    Asked of orjson first, which goes through a body of megabytes in milliseconds where a walk
    in Python takes a tenth of a second: wrapped in `ORJSON_DEPTH - limit` more arrays, a value
    it writes nests at most `limit` levels.  Only one it refuses (too deep, or holding what it
    cannot write at all, such as an integer past 64 bits) is walked."""
    wrapped = value
    for _ in range(ORJSON_DEPTH - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return _walked_too_deep(value, limit)
    return False


def _walked_too_deep(value: Any, limit: int) -> bool:
    level = [value] if _nests(value) else []
    for _ in range(limit):
        if not level:
            return False
        level = [child for item in level for child in _children(item) if _nests(child)]
    return bool(level)


def _children(item: dict[str, Any] | list[Any]) -> Any:
    return item.values() if isinstance(item, dict) else item


def _nests(value: Any) -> bool:
    return isinstance(value, (dict, list))


def readable_id(obj: dict[str, Any]) -> RequestId | None:
    """The id to echo in an error: only a string or a non-boolean integer is a usable id."""
    value = obj.get("id")
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def _invalid(obj: dict[str, Any], message: str) -> Invalid:
    return Invalid(readable_id(obj), JsonRpcError(INVALID_REQUEST, message))


def _params(obj: dict[str, Any]) -> dict[str, Any] | None:
    params = obj.get("params", {})
    return params if isinstance(params, dict) else None


def classify(obj: Any) -> Message:
    """Turn one decoded JSON value into a message.  MCP allows only by-name params."""
    if not isinstance(obj, dict):
        return Invalid(None, JsonRpcError(INVALID_REQUEST, "Invalid Request: expected an object."))
    if obj.get("jsonrpc") != "2.0":
        return _invalid(obj, 'Invalid Request: "jsonrpc" must be exactly "2.0".')
    if "method" in obj:
        return _classify_call(obj)
    if "result" in obj or "error" in obj:
        return _classify_response(obj)
    return _invalid(obj, 'Invalid Request: a message needs "method", "result" or "error".')


def _classify_call(obj: dict[str, Any]) -> Message:
    method = obj["method"]
    if not isinstance(method, str):
        return _invalid(obj, 'Invalid Request: "method" must be a string.')
    params = _params(obj)
    if params is None:
        return _invalid(obj, 'Invalid Request: "params" must be an object.')
    if "id" not in obj:
        return Notification(method, params)
    request_id = readable_id(obj)
    if request_id is None:
        # MCP (basic/index, "Requests") forbids null ids; booleans are not ids either.
        return _invalid(obj, 'Invalid Request: "id" must be a string or an integer.')
    return Request(request_id, method, params)


def _classify_response(obj: dict[str, Any]) -> Message:
    request_id = readable_id(obj)
    if request_id is None or ("result" in obj) == ("error" in obj):
        return _invalid(obj, "Invalid Request: a response needs an id and one of result or error.")
    if "error" in obj and not isinstance(obj["error"], dict):
        return _invalid(obj, 'Invalid Request: "error" must be an object.')
    return Response(request_id, obj.get("result"), obj.get("error"))


def encode_result(request_id: RequestId, result: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def encode_error(request_id: RequestId | None, error: JsonRpcError) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error.to_wire()})


def encode_request(request_id: RequestId, method: str, params: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def encode_notification(method: str, params: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})
