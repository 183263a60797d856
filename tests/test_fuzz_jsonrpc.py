"""Property: whatever a client puts in a JSON-RPC body, in either era, the server answers with a
correct HTTP status and a JSON-RPC error it documents (-32700, -32600, -32601, -32602, -32020,
-32021, -32022, or -32002 for an unknown resource in the handshake era) or a result, an
`isError` one included; never -32603, never an HTTP 500, never a traceback.

The bodies are sent over real HTTP to a running server: bytes as drawn (invalid JSON, invalid
UTF-8, nesting 10,000 deep, numbers beyond 64 bits and beyond a double, duplicate keys), and
well-formed requests of every method with one field or more replaced by a value of the wrong
type or an odd one (jsonrpc, id, method, params, _meta, name, arguments, cursor, uri, level,
progressToken, and the rest), batches where they are not allowed, and, for the HTTP layer that
tests/test_wire_fuzz.py covers with bytes, the same JSON-RPC bodies in arbitrary chunkings and
pipelined on one connection, which must be answered exactly as if sent alone.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sp00ky_mcp.engine.jsonrpc import MAX_DEPTH, too_deep
from sp00ky_mcp.engine.server import McpServer
from tests.wire import (
    BOTH,
    CAPS,
    ENDPOINT,
    LATEST,
    MODERN,
    PV,
    connect,
    encode_request,
    initialize_body,
    modern_meta,
    open_session,
    post_headers,
    running,
)

from .product_support import ProductEnv

pytestmark = pytest.mark.anyio

SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    # One server (and one session) serves every example of a test, on purpose.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
# What a POST with acceptable headers may be answered with: a result or a JSON-RPC error in
# 200, an accepted notification or response in 202, a refused message in 400, an unknown
# method (stateless) or session in 404, an over-long body in 413.
STATUSES = {200, 202, 400, 404, 413}
DOCUMENTED_CODES = {-32700, -32600, -32601, -32602, -32020, -32021, -32022, -32002}
LOG_LEVEL = "io.modelcontextprotocol/logLevel"
READ_BOUND = 10.0


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    session_id: str | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The JSON-RPC messages of the body: one object, a batch's array, or SSE events."""
        if self.content_type == "text/event-stream":
            data = [
                line[len(b"data: ") :]
                for line in self.body.split(b"\n")
                if line.startswith(b"data: ") and line != b"data: "
            ]
            return [json.loads(item) for item in data]
        if self.content_type == "application/json":
            decoded = json.loads(self.body)
            return decoded if isinstance(decoded, list) else [decoded]
        return []

    @property
    def replies(self) -> list[dict[str, Any]]:
        """The responses among the messages (not the notifications or server requests)."""
        return [m for m in self.messages if "method" not in m and ("result" in m or "error" in m)]


async def post(http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> Answer:
    with anyio.fail_after(READ_BOUND):
        response = await http.post(url, content=body, headers=headers)
    kind = response.headers.get("content-type", "").split(";")[0]
    session_id = response.headers.get("mcp-session-id")
    return Answer(response.status_code, kind, response.content, session_id)


UNKNOWN = object()


def check(answer: Answer, sent: Any = UNKNOWN) -> None:
    """The properties every answer has; `sent`, when known, is the message as the client
    meant it, whose id every reply must echo (or null, when the id itself was unusable)."""
    assert answer.status in STATUSES, answer
    assert b"Traceback" not in answer.body, answer
    assert b'File "' not in answer.body, answer
    if answer.status == 202:
        assert answer.body == b"", answer
        return
    if answer.content_type == "text/plain":
        assert answer.status >= 400, answer
        return
    assert answer.content_type in ("application/json", "text/event-stream"), answer
    replies = answer.replies
    assert replies, answer
    ids = [readable_id(m) for m in sent] if isinstance(sent, list) else [readable_id(sent)]
    for reply in replies:
        assert reply["jsonrpc"] == "2.0", reply
        if "error" in reply:
            error = reply["error"]
            assert error["code"] in DOCUMENTED_CODES, answer
            assert isinstance(error["message"], str) and error["message"], answer
            assert sent is UNKNOWN or reply["id"] in [*ids, None], (reply, sent)
        else:
            assert answer.status == 200, answer
            assert sent is UNKNOWN or reply["id"] in ids, (reply, sent)
        # Seen with --hypothesis-show-statistics: which answers the inputs reached.
        event("answer", f"{answer.status} {reply.get('error', {}).get('code', 'result')}")


def readable_id(message: Any) -> Any:
    """The id a reply must echo: a string or an integer JSON-RPC can carry as one."""
    if not isinstance(message, dict):
        return None
    value = message.get("id")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**64:
        return value
    return None


# --- headers, as a conformant client derives them from the body ------------------------------

NAME_FIELDS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def header_safe(value: str) -> str:
    """2026-07-28 "Value Encoding": plain printable ASCII as-is, anything else in base64."""
    if value.isascii() and value.isprintable() and value == value.strip():
        return value
    return "=?base64?" + base64.b64encode(value.encode("utf-8", "surrogatepass")).decode() + "?="


def modern_headers_for(message: Any, spoil: str) -> dict[str, str]:
    headers = {"Accept": BOTH, "Content-Type": "application/json", "MCP-Protocol-Version": MODERN}
    method = message.get("method") if isinstance(message, dict) else None
    if isinstance(method, str):
        headers["Mcp-Method"] = header_safe(method)
        params = message.get("params")
        field = NAME_FIELDS.get(method)
        name = params.get(field) if field and isinstance(params, dict) else None
        if name is not None:
            headers["Mcp-Name"] = header_safe(name) if isinstance(name, str) else json.dumps(name)
    if spoil == "no method header":
        headers.pop("Mcp-Method", None)
    elif spoil == "no name header":
        headers.pop("Mcp-Name", None)
    elif spoil == "other version header":
        headers["MCP-Protocol-Version"] = "2025-11-25"
    elif spoil == "bogus version header":
        headers["MCP-Protocol-Version"] = "2099-01-01"
    elif spoil == "no version header":
        del headers["MCP-Protocol-Version"]
    elif spoil == "sse first":
        headers["Accept"] = "text/event-stream, application/json"
    return headers


SPOILS = [
    "none",
    "none",
    "none",
    "none",
    "sse first",
    "no method header",
    "no name header",
    "other version header",
    "bogus version header",
    "no version header",
]


def session_headers(session_id: str, version: str = LATEST) -> dict[str, str]:
    return post_headers(session_id, version)


# --- raw bodies ------------------------------------------------------------------------------


def nested_text(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def deep_object(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


def request_text(**fields: str) -> bytes:
    """A request whose members are given as JSON text, so that they can be anything."""
    members = {"jsonrpc": '"2.0"', "id": "1", "method": '"tools/list"', "params": "{}", **fields}
    return ("{" + ",".join(f'"{k}":{v}' for k, v in members.items() if v) + "}").encode()


RAW_BODIES = [
    b"",
    b" ",
    b"\n\t\r ",
    b"null",
    b"true",
    b"0",
    b'"tools/list"',
    b"[]",
    b"{}",
    b"[{}]",
    b"[[]]",
    b"{",
    b"}",
    b'{"jsonrpc":"2.0",}',
    b"{'jsonrpc':'2.0'}",
    b'{"jsonrpc":"2.0","id":1,"method":"ping"} trailing',
    b'{"jsonrpc":"2.0","id":1,"method":"ping"}{"jsonrpc":"2.0","id":2,"method":"ping"}',
    b'/* comment */{"jsonrpc":"2.0","id":1,"method":"ping"}',
    b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"ping"}',
    b"\xff\xfe{\x00}\x00",
    b'{"jsonrpc":"2.0","id":1,"method":"ping\xff"}',
    b'{"jsonrpc":"2.0","id":1,"method":"\xc0\xaf"}',
    b'{"jsonrpc":"2.0","id":1,"method":"\xed\xa0\x80"}',
    b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',
    b'{"jsonrpc":"2.0","id":"\\udc00\\ud800","method":"ping"}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"\\u0000"}}',
    nested_text(1_023),
    nested_text(1_024),
    nested_text(1_025),
    nested_text(10_000),
    nested_text(100_000),
    nested_text(10_000, "{", "}"),
    nested_text(10_000)[:-1],
    deep_object(2_000),
    request_text(params='{"_meta":' + "[" * 2_000 + "]" * 2_000 + "}"),
    request_text(id="1e400"),
    request_text(id="-1e400"),
    request_text(id="1e-400"),
    request_text(id="123456789012345678901234567890"),
    request_text(id="18446744073709551615"),
    request_text(id="18446744073709551616"),
    request_text(id="-9223372036854775808"),
    request_text(id="-9223372036854775809"),
    request_text(id="NaN"),
    request_text(id="Infinity"),
    request_text(id="-0"),
    request_text(id="1.0"),
    request_text(id="0x10"),
    request_text(id="01"),
    request_text(params='{"cursor":1e400}'),
    request_text(params='{"_meta":{"progressToken":123456789012345678901234567890}}'),
    b'{"jsonrpc":"2.0","jsonrpc":"1.0","id":1,"method":"tools/list","params":{}}',
    b'{"jsonrpc":"1.0","jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}',
    b'{"jsonrpc":"2.0","id":1,"id":"two","method":"tools/list","params":{}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{},"params":[]}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"a","cursor":"b"}}',
    b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}',
    b'{"jsonrpc":"2.0","id":1,"error":"nope"}',
    b'{"jsonrpc":"2.0","error":{"code":-32000,"message":"no id"}}',
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[1]}}',
    b'{"jsonrpc":"2.0","method":"notifications/unknown"}',
    b'{"jsonrpc":"2.0","method":1}',
    b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}',
    b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]',
    b"[1,2,3]",
    b"[" + b",".join([b'{"jsonrpc":"2.0","id":1,"method":"ping"}'] * 500) + b"]",
    json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x" * 100_000}).encode(),
    json.dumps({"jsonrpc": "2.0", "id": "i" * 100_000, "method": "tools/list"}).encode(),
    b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"' + b"A" * 500_000 + b'"}}',
]


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(buffer)))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from(b'\x00\xff\xc3"\\{}[],:0e-.nt\n'))
        if op == "insert":
            buffer.insert(at, byte)
        elif at < len(buffer):
            if op == "replace":
                buffer[at] = byte
            else:
                del buffer[at]
    return bytes(buffer)


def sample_request(era: str) -> bytes:
    meta = {"_meta": modern_meta()} if era == "modern" else {}
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": meta}
    return json.dumps(message).encode()


raw_bodies = st.one_of(
    st.sampled_from(RAW_BODIES),
    st.binary(max_size=300),
    st.sampled_from(["modern", "handshake"]).map(sample_request).flatmap(mutated_bytes),
)


# --- well-formed requests with spoiled fields ------------------------------------------------

# Tools of the conformance profile that answer at once in both eras.  Left out: those that
# wait for the client,
# test_reconnection (it ends its stream on purpose, to be resumed), and listen (it streams
# until the server ends it).
TOOLS = [
    "test_simple_text",
    "test_image_content",
    "test_error_handling",
    "test_tool_with_progress",
    "test_tool_with_logging",
    "test_logging_tool",
    "test_x_mcp_header",
    "test_missing_capability",
    "test_sampling",
    "test_elicitation",
    "test_streaming_elicitation",
    "json_schema_2020_12_tool",
    "test_trigger_tool_change",
    "no_such_tool",
]
MODERN_ONLY_TOOLS = [
    "test_input_required_result_elicitation",
    "test_input_required_result_request_state",
    "test_input_required_result_capabilities",
]


def templates(era: str) -> dict[str, dict[str, Any]]:
    """A well-formed params object per method the era serves (and some it does not)."""
    shared: dict[str, dict[str, Any]] = {
        "tools/list": {},
        "tools/call": {"name": "test_simple_text", "arguments": {}},
        "resources/list": {},
        "resources/templates/list": {},
        "resources/read": {"uri": "test://static-text"},
        "prompts/list": {},
        "prompts/get": {"name": "test_prompt_with_arguments", "arguments": {"arg1": "a"}},
        "completion/complete": {
            "ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
            "argument": {"name": "arg1", "value": "a"},
        },
        "ping": {},
        "logging/setLevel": {"level": "info"},
        "resources/subscribe": {"uri": "test://watched-resource"},
        "resources/unsubscribe": {"uri": "test://watched-resource"},
        "server/discover": {},
        "rpc.discover": {},
        "": {},
    }
    if era == "modern":
        return {method: {**params, "_meta": modern_meta()} for method, params in shared.items()}
    return shared


def weird_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    )
    values = st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=6,
    )
    odd = [
        None,
        True,
        False,
        0,
        -1,
        1.5,
        -0.0,
        2**63 - 1,
        2**64 - 1,
        2**64,
        -(2**63) - 1,
        10**30,
        1e308,
        "",
        "2.0",
        "x",
        "\x00",
        "\r\n",
        "\u202e",
        "²",
        "'; DROP TABLE projects;--",
        "../../etc/passwd",
        "a" * 10_000,
        [],
        [1],
        {},
        {"a": 1},
        nested(100),
        nested(300),
    ]
    return st.one_of(st.sampled_from(odd), values, st.sampled_from(TOOLS + MODERN_ONLY_TOOLS))


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


PATHS: list[tuple[str, ...]] = [
    ("jsonrpc",),
    ("id",),
    ("method",),
    ("params",),
    ("params", "_meta"),
    ("params", "name"),
    ("params", "arguments"),
    ("params", "arguments", "region"),
    ("params", "cursor"),
    ("params", "uri"),
    ("params", "level"),
    ("params", "ref"),
    ("params", "argument"),
    ("params", "argument", "value"),
    ("params", "context"),
    ("params", "requestState"),
    ("params", "inputResponses"),
    ("params", "_meta", "progressToken"),
    ("params", "_meta", PV),
    ("params", "_meta", CAPS),
    ("params", "_meta", LOG_LEVEL),
    ("params", "_meta", "io.modelcontextprotocol/clientInfo"),
    ("result",),
    ("error",),
    ("extra",),
]
Edit = tuple[str, tuple[str, ...], Any]
edits = st.tuples(
    st.sampled_from(["set", "set", "set", "delete"]), st.sampled_from(PATHS), weird_values()
)


def apply(message: dict[str, Any], edit: Edit) -> None:
    op, path, value = edit
    target: Any = message
    for key in path[:-1]:
        if not isinstance(target, dict):
            return
        target = target.setdefault(key, {})
    if not isinstance(target, dict):
        return
    if op == "delete":
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value


LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
ASKING = {
    *MODERN_ONLY_TOOLS,
    "test_input_required_result_sampling",
    "test_input_required_result_list_roots",
    "test_input_required_result_multiple_inputs",
    "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state",
    "test_input_required_result_prompt",
}


def depth(value: Any) -> int:
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            stack.extend((child, level + 1) for child in children)
    return deepest


@st.composite
def spoiled_request(draw: st.DrawFn, era: str) -> tuple[Any, str]:
    """A request of some method, with one to three edits, and how its headers are spoiled."""
    table = templates(era)
    # tools/call has the most to spoil: a third of the requests call a tool.
    method = draw(st.sampled_from([*sorted(table), *["tools/call"] * 7]))
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": draw(st.integers(0, 2**40))}
    message["method"] = method
    message["params"] = json.loads(json.dumps(table[method]))
    if method == "tools/call":
        pool = TOOLS + MODERN_ONLY_TOOLS if era == "modern" else TOOLS
        message["params"]["name"] = draw(st.sampled_from(pool))
    for edit in draw(st.lists(edits, min_size=1, max_size=3)):
        apply(message, edit)
    spoil = draw(st.sampled_from(SPOILS)) if era == "modern" else "none"
    return message, spoil


def encode(message: Any) -> bytes:
    return json.dumps(message).encode()


def requests_in(era: str) -> st.SearchStrategy[tuple[Any, str]]:
    return spoiled_request(era)


# --- fixtures --------------------------------------------------------------------------------


@dataclass
class Target:
    server: McpServer
    url: str
    http: httpx.AsyncClient
    session_id: str
    legacy_session_id: str


@pytest.fixture
async def target(conformance_server: McpServer) -> AsyncIterator[Target]:
    """The conformance profile (every kind of method), a 2025-11-25 session and a 2025-03-26
    one (the revision with batches)."""
    session_id = await open_session(conformance_server)
    legacy = await open_session(conformance_server, "2025-03-26")
    async with httpx.AsyncClient() as http:
        yield Target(conformance_server, conformance_server.url, http, session_id, legacy)
        answer = await post(http, conformance_server.url, encode(PING), session_headers(session_id))
        assert (answer.status, answer.replies) == (200, [PONG]), "the session did not survive"


PING = {"jsonrpc": "2.0", "id": "alive", "method": "ping"}
PONG = {"jsonrpc": "2.0", "id": "alive", "result": {}}


# --- the properties --------------------------------------------------------------------------


@SETTINGS
@given(body=raw_bodies, era=st.sampled_from(["modern", "handshake", "no session"]))
async def test_any_bytes_as_a_body_get_a_documented_error_or_a_result_in_either_era(
    target: Target, body: bytes, era: str
) -> None:
    headers = post_headers() if era == "no session" else era_headers(target, era)
    check(await post(target.http, target.url, body, headers))


@SETTINGS
@given(case=requests_in("modern"))
async def test_stateless_requests_with_spoiled_fields_get_a_documented_error_or_a_result(
    target: Target, case: tuple[Any, str]
) -> None:
    message, spoil = case
    answer = await post(
        target.http, target.url, encode(message), modern_headers_for(message, spoil)
    )
    check(answer, message)


@SETTINGS
@given(case=requests_in("handshake"))
async def test_session_requests_with_spoiled_fields_get_a_documented_error_or_a_result(
    target: Target, case: tuple[Any, str]
) -> None:
    message, _ = case
    if isinstance(message, dict) and message.get("method") == "initialize":
        return  # a new session each time: initialize has its own property below
    answer = await post(
        target.http, target.url, encode(message), session_headers(target.session_id)
    )
    check(answer, message)


@st.composite
def initialize_requests(draw: st.DrawFn) -> dict[str, Any]:
    params = {"protocolVersion": LATEST, "capabilities": {}, "clientInfo": {"name": "x"}}
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
    for edit in draw(st.lists(init_edits, min_size=1, max_size=3)):
        apply(message, edit)
    return message


init_edits = st.tuples(
    st.sampled_from(["set", "set", "delete"]),
    st.sampled_from(
        [
            ("id",),
            ("jsonrpc",),
            ("params",),
            ("params", "protocolVersion"),
            ("params", "capabilities"),
            ("params", "capabilities", "elicitation"),
            ("params", "clientInfo"),
            ("params", "clientInfo", "name"),
            ("params", "_meta"),
        ]
    ),
    weird_values(),
)


@SETTINGS
@given(message=initialize_requests())
async def test_initialize_with_spoiled_fields_gets_a_documented_error_or_a_session(
    target: Target, message: dict[str, Any]
) -> None:
    answer = await post(target.http, target.url, encode(message), post_headers())
    check(answer, message)
    if "result" in answer.replies[0]:
        version = answer.replies[0]["result"]["protocolVersion"]
        assert version in ("2025-11-25", "2025-06-18", "2025-03-26")
        # Sessions are bounded per principal (the oldest is evicted), and the fixture's own
        # must survive: this one is not needed any more.
        assert answer.session_id is not None
        await target.http.delete(target.url, headers={"Mcp-Session-Id": answer.session_id})


@SETTINGS
@given(
    messages=st.lists(requests_in("handshake").map(lambda case: case[0]), min_size=1, max_size=5),
    version=st.sampled_from(["2025-03-26", "2025-06-18", "2025-11-25", "modern"]),
)
async def test_a_batch_is_answered_one_reply_per_request_in_2025_03_26_and_refused_elsewhere(
    target: Target, messages: list[Any], version: str
) -> None:
    """2025-03-26 is the only revision with batches: there every request of the batch gets
    its reply in a JSON array, in order, and notifications and responses none (202 when the
    batch holds only those); any other revision refuses the batch with 400 and -32600."""
    messages = [
        m for m in messages if not (isinstance(m, dict) and m.get("method") == "initialize")
    ]
    if not messages:
        return
    body = encode(messages)
    if version == "2025-03-26":
        headers = session_headers(target.legacy_session_id, version)
    elif version == "modern":
        headers = modern_headers_for({"method": "tools/list"}, "none")
    else:
        headers = session_headers(target.session_id, version)
    answer = await post(target.http, target.url, body, headers)
    check(answer, messages)
    if version != "2025-03-26" or too_deep(messages, MAX_DEPTH):
        # Refused whole: a batch elsewhere, a body nesting too deep anywhere.
        assert answer.status == 400, answer
        assert [r["error"]["code"] for r in answer.replies] == [-32600]
        return
    calls = [m for m in messages if is_call(m)]
    if not calls:
        assert answer.status == 202, answer
        return
    assert [r["id"] for r in answer.replies] == [readable_id(m) for m in calls], (answer, messages)


def is_call(message: Any) -> bool:
    """A message the server must answer (JSON-RPC 2.0 sections 4 and 5): a request, or
    anything it cannot accept; notifications and well-formed responses are not."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return True
    if "method" in message:
        if not isinstance(message["method"], str):
            return True
        return "id" in message or not isinstance(message.get("params", {}), dict)
    if "result" not in message and "error" not in message:
        return True
    well_formed = (
        readable_id(message) is not None
        and ("result" in message) != ("error" in message)
        and isinstance(message.get("error", {}), dict)
    )
    return not well_formed


# --- the product profile: authenticated, its tools, its audit trail ---------------------------


@dataclass
class ProductTarget:
    env: ProductEnv
    token: str
    session_id: str


@pytest.fixture
async def product_target(product: ProductEnv) -> ProductTarget:
    token = await product.token(await product.user(), "mcp:full")
    await product.structured(token, "create_project", {"name": "api"})
    reply = await product.http.post(
        product.server.url,
        content=initialize_body(),
        headers={**post_headers(), "Authorization": f"Bearer {token}"},
    )
    return ProductTarget(product, token, reply.headers["mcp-session-id"])


PRODUCT_TOOLS = ["list_projects", "get_project", "set_env_var", "get_logs", "deploy", "nope"]


@st.composite
def product_calls(draw: st.DrawFn, era: str) -> tuple[Any, str]:
    params: dict[str, Any] = {
        "name": draw(st.sampled_from(PRODUCT_TOOLS)),
        "arguments": {"project": "api", "key": "K", "value": "v"},
    }
    if era == "modern":
        params["_meta"] = modern_meta()
    method = draw(st.sampled_from(["tools/call", "tools/call", "tools/list"]))
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    for edit in draw(st.lists(edits, min_size=1, max_size=3)):
        apply(message, edit)
    return message, draw(st.sampled_from(SPOILS)) if era == "modern" else "none"


@SETTINGS
@given(case=product_calls("modern"), handshake=product_calls("handshake"))
async def test_product_calls_with_spoiled_fields_get_a_documented_error_or_a_result(
    product_target: ProductTarget, case: tuple[Any, str], handshake: tuple[Any, str]
) -> None:
    env, auth = product_target.env, {"Authorization": f"Bearer {product_target.token}"}
    message, spoil = case
    headers = {**modern_headers_for(message, spoil), **auth}
    check(await post(env.http, env.server.url, encode(message), headers), message)
    message = handshake[0]
    if isinstance(message, dict) and message.get("method") == "initialize":
        return
    headers = {**session_headers(product_target.session_id), **auth}
    check(await post(env.http, env.server.url, encode(message), headers), message)


# --- exact answers for each field of the wrong type ------------------------------------------

NOT_STRINGS = [None, True, 0, 1.5, [], ["x"], {}, {"a": "b"}]
NOT_IDS = [None, True, False, 1.5, 1e300, [], [1], {}, {"id": 1}]
NOT_OBJECTS: list[Any] = [None, True, 0, 1.5, "x", [], [{}]]


def request(method: str, era: str, request_id: Any = 1, **params: Any) -> dict[str, Any]:
    if era == "modern":
        params = {**params, "_meta": params.get("_meta", modern_meta())}
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


async def send(target: Target, message: Any, era: str, spoil: str = "none") -> Answer:
    headers = (
        modern_headers_for(message, spoil)
        if era == "modern"
        else session_headers(target.session_id)
    )
    return await post(target.http, target.url, encode(message), headers)


def era_headers(target: Target, era: str) -> dict[str, str]:
    if era == "modern":
        return modern_headers_for({"method": "tools/list"}, "none")
    return session_headers(target.session_id)


def error_of(answer: Answer) -> tuple[int, int, Any]:
    [reply] = answer.replies
    return answer.status, reply["error"]["code"], reply["id"]


ERAS = ["modern", "handshake"]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("value", [None, "1.0", "2", 2.0, 2, True, [], {}, "2.0 ", ""])
async def test_a_jsonrpc_member_other_than_2_0_is_an_invalid_request(
    target: Target, era: str, value: Any
) -> None:
    message = {**request("tools/list", era), "jsonrpc": value}
    assert error_of(await send(target, message, era)) == (400, -32600, 1)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("value", NOT_IDS)
async def test_an_id_that_is_neither_a_string_nor_an_integer_is_an_invalid_request(
    target: Target, era: str, value: Any
) -> None:
    message = request("tools/list", era, value)
    assert error_of(await send(target, message, era)) == (400, -32600, None)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("value", [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, "", "i" * 1000])
async def test_any_string_or_64_bit_integer_id_is_echoed_exactly(
    target: Target, era: str, value: Any
) -> None:
    answer = await send(target, request("tools/list", era, value), era)
    assert answer.status == 200
    assert [reply["id"] for reply in answer.replies] == [value]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("value", NOT_STRINGS)
async def test_a_method_that_is_not_a_string_is_an_invalid_request(
    target: Target, era: str, value: Any
) -> None:
    message = {**request("tools/list", era), "method": value}
    assert error_of(await send(target, message, era)) == (400, -32600, 1)


@pytest.mark.parametrize(
    ("method", "stateless"),
    [
        ("", (404, -32601, 1)),
        ("tools/lis", (404, -32601, 1)),
        ("TOOLS/LIST", (404, -32601, 1)),
        ("rpc.discover", (404, -32601, 1)),
        ("x" * 10_000, (404, -32601, 1)),
        # No Mcp-Method header can carry a NUL, so a stateless client cannot name it.
        ("tools/list\x00", (400, -32020, 1)),
    ],
    ids=["empty", "misspelt", "upper-case", "rpc.discover", "10k characters", "NUL"],
)
async def test_an_unknown_method_is_not_found_in_either_era(
    target: Target, method: str, stateless: tuple[int, int, int]
) -> None:
    modern = await send(target, request(method, "modern"), "modern")
    handshake = await send(target, request(method, "handshake"), "handshake")
    assert (error_of(modern), error_of(handshake)) == (stateless, (200, -32601, 1))


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("value", NOT_OBJECTS)
async def test_params_that_are_not_an_object_are_an_invalid_request(
    target: Target, era: str, value: Any
) -> None:
    message = {**request("tools/list", era), "params": value}
    assert error_of(await send(target, message, era)) == (400, -32600, 1)


@pytest.mark.parametrize("value", NOT_OBJECTS)
async def test_a_meta_that_is_not_an_object_is_invalid_params_statelessly_and_ignored_in_a_session(
    target: Target, value: Any
) -> None:
    modern = await send(target, request("tools/list", "modern", _meta=value), "modern")
    handshake = await send(target, request("ping", "handshake", _meta=value), "handshake")
    assert error_of(modern) == (400, -32602, 1)
    assert (handshake.status, handshake.replies) == (
        200,
        [{"jsonrpc": "2.0", "id": 1, "result": {}}],
    )


@pytest.mark.parametrize("value", NOT_STRINGS)
async def test_a_tool_name_that_is_not_a_string_is_invalid_params_or_a_header_mismatch(
    target: Target, value: Any
) -> None:
    """Statelessly no Mcp-Name header can equal a name that is not a string (-32020)."""
    modern = await send(target, request("tools/call", "modern", name=value), "modern")
    handshake = await send(target, request("tools/call", "handshake", name=value), "handshake")
    assert (error_of(modern), error_of(handshake)) == ((400, -32020, 1), (200, -32602, 1))


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("value", [[], ["x"], "x", 1, True, 1.5])
async def test_tool_arguments_that_are_not_an_object_are_invalid_params(
    target: Target, era: str, value: Any
) -> None:
    message = request("tools/call", era, name="test_simple_text", arguments=value)
    assert error_of(await send(target, message, era)) == (200, -32602, 1)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    "value",
    [
        1,
        True,
        [],
        {},
        "",
        "!!!",
        base64.urlsafe_b64encode(b"tools:-1").decode(),
        base64.urlsafe_b64encode(b"tools:99999999999999999999").decode(),
        base64.urlsafe_b64encode(b"prompts:0").decode(),
        base64.urlsafe_b64encode("tools:²".encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
async def test_a_cursor_that_was_never_handed_out_is_invalid_params(
    target: Target, era: str, value: Any
) -> None:
    message = request("tools/list", era, cursor=value)
    assert error_of(await send(target, message, era)) == (200, -32602, 1)


@pytest.mark.parametrize("value", [None, 1, True, [], {}, ""])
async def test_a_resource_uri_that_is_not_a_string_is_invalid_params_or_a_header_mismatch(
    target: Target, value: Any
) -> None:
    modern = await send(target, request("resources/read", "modern", uri=value), "modern")
    handshake = await send(target, request("resources/read", "handshake", uri=value), "handshake")
    expected_modern = (200, -32602, 1) if value == "" else (400, -32020, 1)
    assert (error_of(modern), error_of(handshake)) == (expected_modern, (200, -32602, 1))


@pytest.mark.parametrize("uri", ["test://nope", "../../etc/passwd", "file:///etc/passwd", "²"])
async def test_an_unknown_resource_is_not_found_with_each_eras_code(
    target: Target, uri: str
) -> None:
    modern = await send(target, request("resources/read", "modern", uri=uri), "modern")
    handshake = await send(target, request("resources/read", "handshake", uri=uri), "handshake")
    assert (error_of(modern), error_of(handshake)) == ((200, -32602, 1), (200, -32002, 1))


@pytest.mark.parametrize("value", [None, 1, True, [], {}, "", "DEBUG", "verbose", "info\x00"])
async def test_a_log_level_that_is_not_a_level_is_invalid_params(
    target: Target, value: Any
) -> None:
    message = request("logging/setLevel", "handshake", level=value)
    assert error_of(await send(target, message, "handshake")) == (200, -32602, 1)


async def test_set_level_is_not_a_stateless_method(target: Target) -> None:
    message = request("logging/setLevel", "modern", level="info")
    assert error_of(await send(target, message, "modern")) == (404, -32601, 1)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("value", [None, True, 1.5, [], [1], {}, {"a": 1}])
async def test_a_progress_token_that_is_neither_a_string_nor_an_integer_is_ignored(
    target: Target, era: str, value: Any
) -> None:
    meta = (
        {**modern_meta(), "progressToken": value} if era == "modern" else {"progressToken": value}
    )
    message = request("tools/call", era, name="test_tool_with_progress", arguments={}, _meta=meta)
    answer = await send(target, message, era)
    assert answer.status == 200
    assert [m.get("method") for m in answer.messages] == [None]
    assert answer.replies[0]["result"]["content"] == [{"type": "text", "text": "0"}]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("value", [0, 2**64 - 1, -(2**63), "", "t" * 1000, "\r\n", "\u202e"])
async def test_a_string_or_integer_progress_token_is_echoed_in_every_notification(
    target: Target, era: str, value: Any
) -> None:
    meta = (
        {**modern_meta(), "progressToken": value} if era == "modern" else {"progressToken": value}
    )
    message = request("tools/call", era, name="test_tool_with_progress", arguments={}, _meta=meta)
    answer = await send(target, message, era)
    progress = [m["params"] for m in answer.messages if m.get("method")]
    assert [(p["progressToken"], p["progress"]) for p in progress] == [
        (value, 0),
        (value, 50),
        (value, 100),
    ]
    assert answer.replies[0]["result"]["content"] == [{"type": "text", "text": str(value)}]


@pytest.mark.parametrize(
    "body",
    [nested_text(10_000), nested_text(1_025), deep_object(2_000), request_text(id="1e400")],
    ids=["10k nested arrays", "1025 nested arrays", "2000 nested objects", "id 1e400"],
)
@pytest.mark.parametrize("era", ERAS)
async def test_nesting_beyond_the_parser_bound_and_numbers_beyond_a_double_are_parse_errors(
    target: Target, body: bytes, era: str
) -> None:
    answer = await post(target.http, target.url, body, era_headers(target, era))
    assert error_of(answer) == (400, -32700, None)
    assert (
        answer.replies[0]["error"]["message"] == "Parse error: the request body is not valid JSON."
    )


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"ping\xff"}',
        b'{"jsonrpc":"2.0","id":1,"method":"\xc0\xaf"}',
        b'{"jsonrpc":"2.0","id":1,"method":"\xed\xa0\x80"}',
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',
        b"\xff\xfe{\x00}\x00",
    ],
    ids=["invalid byte", "overlong", "encoded surrogate", "escaped lone surrogate", "UTF-16"],
)
async def test_a_body_that_is_not_utf_8_is_a_parse_error(
    target: Target, era: str, body: bytes
) -> None:
    answer = await post(target.http, target.url, body, era_headers(target, era))
    assert error_of(answer) == (400, -32700, None)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    ("digits", "answered"),
    [
        ("18446744073709551615", 18446744073709551615),
        ("-9223372036854775808", -9223372036854775808),
        ("18446744073709551616", None),
        ("123456789012345678901234567890", None),
        ("-9223372036854775809", None),
    ],
)
async def test_an_id_beyond_64_bits_is_an_invalid_request_and_one_within_is_echoed(
    target: Target, era: str, digits: str, answered: int | None
) -> None:
    """Integers beyond 64 bits are read as doubles, which are no ids."""
    params = json.dumps(request("tools/list", era)["params"])
    body = f'{{"jsonrpc":"2.0","id":{digits},"method":"tools/list","params":{params}}}'
    answer = await post(target.http, target.url, body.encode(), era_headers(target, era))
    if answered is None:
        assert error_of(answer) == (400, -32600, None)
    else:
        assert (answer.status, [r["id"] for r in answer.replies]) == (200, [answered])


@pytest.mark.parametrize("era", ERAS)
async def test_duplicate_keys_are_read_last_one_wins_the_same_way_everywhere(
    target: Target, era: str
) -> None:
    """RFC 8259 leaves duplicate names to the parser; ours keeps the last, and the routing
    headers are checked against what it kept, so the two cannot disagree."""
    meta = json.dumps(modern_meta())
    body = (
        '{"jsonrpc":"2.0","id":1,"id":"second","method":"tools/call","method":"tools/list",'
        f'"params":{{"_meta":{meta},"cursor":"bad","cursor":null}}}}'
    ).encode()
    answer = await post(target.http, target.url, body, era_headers(target, era))
    [reply] = answer.replies
    assert (answer.status, reply["id"], "tools" in reply["result"]) == (200, "second", True)


@pytest.mark.parametrize(
    ("version", "session"),
    [("2025-11-25", "session"), ("2025-06-18", "session"), (MODERN, None)],
)
async def test_a_batch_is_refused_with_400_outside_2025_03_26(
    target: Target, version: str, session: str | None
) -> None:
    batch = [request("ping", "handshake", 1), request("tools/list", "handshake", 2)]
    headers = (
        session_headers(target.session_id, version)
        if session
        else modern_headers_for({"method": "tools/list"}, "none")
    )
    answer = await post(target.http, target.url, encode(batch), headers)
    assert error_of(answer) == (400, -32600, None)
    if session:
        assert "batches are not supported" in answer.replies[0]["error"]["message"]


async def test_a_2025_03_26_batch_gets_one_reply_per_request_in_order(target: Target) -> None:
    batch = [
        request("ping", "handshake", 1),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": True, "method": "ping"},
        request("no/such", "handshake", "three"),
        {"jsonrpc": "2.0", "id": "r", "result": {}},
        request("tools/call", "handshake", 4, name=[]),
    ]
    headers = session_headers(target.legacy_session_id, "2025-03-26")
    answer = await post(target.http, target.url, encode(batch), headers)
    assert answer.status == 200
    assert [(r["id"], r.get("error", {}).get("code")) for r in answer.replies] == [
        (1, None),
        (None, -32600),
        ("three", -32601),
        (4, -32602),
    ]


@pytest.mark.parametrize("batch", [[], [[]], [1, "x", None]], ids=["empty", "nested", "scalars"])
async def test_an_empty_or_scalar_batch_in_2025_03_26_is_an_invalid_request(
    target: Target, batch: list[Any]
) -> None:
    headers = session_headers(target.legacy_session_id, "2025-03-26")
    answer = await post(target.http, target.url, encode(batch), headers)
    codes = [(r["id"], r["error"]["code"]) for r in answer.replies]
    assert answer.status == (400 if not batch else 200)
    assert codes == [(None, -32600)] * max(len(batch), 1)


async def test_initialize_inside_a_batch_is_refused(target: Target) -> None:
    batch = [json.loads(initialize_body("2025-03-26")), request("ping", "handshake", 1)]
    answer = await post(target.http, target.url, encode(batch), post_headers())
    assert error_of(answer) == (400, -32600, None)


# --- the HTTP layer under JSON-RPC: chunkings, pipelining, request lines, header forms -------

HTTP_SETTINGS = settings(SETTINGS, max_examples=60)


def stateless_messages() -> st.SearchStrategy[bytes]:
    """Stateless requests whose answers depend on nothing but the request: no tool that
    streams, no id that is random."""
    deterministic = [
        "tools/list",
        "resources/list",
        "resources/read",
        "prompts/get",
        "server/discover",
        "ping",
        "",
    ]

    def build(method: str, cursor: Any, request_id: int) -> dict[str, Any]:
        message = request(method, "modern", request_id, **templates("modern")[method])
        if cursor is not None:
            message["params"]["cursor"] = cursor
        return message

    return st.builds(
        build,
        st.sampled_from(deterministic),
        st.sampled_from([None, None, "x", 1]),
        st.integers(0, 1000),
    ).map(encode)


def headers_of(body: bytes) -> list[tuple[str, str]]:
    """The header fields a stateless client sends with this body (those of tools/list when
    the body is no request)."""
    message = json.loads(body) if is_json_object(body) else {"method": "tools/list"}
    return list(modern_headers_for(message, "none").items())


async def alone(server: McpServer, body: bytes) -> tuple[int, str | None, bytes]:
    async with connect(server) as wire:
        await wire.request("POST", ENDPOINT, headers_of(body), body)
        reply = await wire.final()
    return reply.status, reply.head.get("content-type"), reply.body


@st.composite
def chunkings(draw: st.DrawFn, body: bytes) -> bytes:
    """The body as chunks of drawn sizes, each size line maybe with an extension, maybe in
    upper-case hex, then maybe trailer fields (RFC 9112 section 7.1)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=8)))
    parts = [body[a:b] for a, b in itertools.pairwise([0, *cuts, len(body)]) if b > a]
    out = b""
    for part in parts:
        size = b"%X" % len(part) if draw(st.booleans()) else b"%x" % len(part)
        extension = draw(st.sampled_from([b"", b"", b";ext", b';name="quoted value"', b";a=b"]))
        out += size + extension + b"\r\n" + part + b"\r\n"
    trailer = draw(st.sampled_from([b"", b"", b"X-Trailer: 1\r\n", b"A: x\r\nB: y\r\n"]))
    return out + b"0\r\n" + trailer + b"\r\n"


@HTTP_SETTINGS
@given(case=stateless_messages().flatmap(lambda body: st.tuples(st.just(body), chunkings(body))))
async def test_a_json_rpc_body_in_any_chunking_gets_the_answer_it_gets_in_one_piece(
    conformance_server: McpServer, case: tuple[bytes, bytes]
) -> None:
    body, framed = case
    expected = await alone(conformance_server, body)
    fields = [*headers_of(body), ("Transfer-Encoding", "chunked")]
    async with connect(conformance_server) as wire:
        await wire.send(encode_request("POST", ENDPOINT, fields, None, wire.host) + framed)
        reply = await wire.final()
    assert (reply.status, reply.head.get("content-type"), reply.body) == expected


@HTTP_SETTINGS
@given(
    bodies=st.lists(st.one_of(stateless_messages(), st.sampled_from(RAW_BODIES[:26])), max_size=6),
    split=st.integers(1, 97),
)
async def test_pipelined_json_rpc_requests_are_answered_in_order_as_if_sent_alone(
    conformance_server: McpServer, bodies: list[bytes], split: int
) -> None:
    expected = [await alone(conformance_server, body) for body in bodies]
    host = f"{conformance_server.config.host}:{conformance_server.port}"
    stream = b"".join(
        encode_request("POST", ENDPOINT, headers_of(body), body, host) for body in bodies
    )
    async with connect(conformance_server) as wire:
        for at in range(0, len(stream), split * 37):
            await wire.send(stream[at : at + split * 37])
        got = []
        for _ in bodies:
            reply = await wire.final()
            got.append((reply.status, reply.head.get("content-type"), reply.body))
    assert got == expected


def is_json_object(body: bytes) -> bool:
    try:
        decoded = json.loads(body)
    except ValueError:
        return False
    return isinstance(decoded, dict) and isinstance(decoded.get("method"), str)


TOOLS_LIST = request("tools/list", "modern", 1)


@pytest.mark.parametrize(
    ("target_", "status"),
    [
        (ENDPOINT, 200),
        (f"{ENDPOINT}?x=1", 200),
        (f"{ENDPOINT}?", 200),
        ("/v1/%6Dcp", 200),
        (f"{ENDPOINT}/", 404),
        ("/V1/MCP", 404),
        ("/v1//mcp", 404),
        (f"{ENDPOINT}%00", 404),
        (f"{ENDPOINT}%2F", 404),
        ("/v1/mcp/../mcp", 404),
        ("*", 404),
    ],
)
async def test_odd_request_targets_are_served_only_when_they_name_the_endpoint(
    conformance_server: McpServer, target_: str, status: int
) -> None:
    body = encode(TOOLS_LIST)
    async with connect(conformance_server) as wire:
        await wire.request("POST", target_, headers_of(body), body)
        reply = await wire.final()
    assert reply.status == status


async def test_an_absolute_form_request_target_is_served(conformance_server: McpServer) -> None:
    body = encode(TOOLS_LIST)
    absolute = f"http://127.0.0.1:{conformance_server.port}{ENDPOINT}"
    async with connect(conformance_server) as wire:
        await wire.request("POST", absolute, headers_of(body), body)
        reply = await wire.final()
    assert reply.status == 200


@pytest.mark.parametrize(
    "fields",
    [
        [("accept", BOTH), ("content-type", "application/json")],
        [("ACCEPT", BOTH), ("CONTENT-TYPE", "Application/JSON; charset=UTF-8")],
        [
            ("Accept", "application/json"),
            ("Accept", "text/event-stream"),
            ("Content-Type", "application/json"),
        ],
        [("Accept", f"  {BOTH}  "), ("Content-Type", "application/json ")],
        [("Accept", "*/*"), ("Content-Type", "application/json")],
        [("Accept", BOTH), ("Content-Type", "application/json"), ("X-Empty", "")],
        [("Accept", BOTH), ("Content-Type", "application/json"), ("X-Obs-Text", "\xe9\xff")],
        [("Accept", BOTH), ("Content-Type", "application/json"), ("Connection", "keep-alive")],
        [("Accept", BOTH), ("Content-Type", "application/json"), *[("X-Many", "v")] * 100],
    ],
    ids=[
        "lower-case",
        "upper-case",
        "repeated",
        "padded",
        "wildcard",
        "empty",
        "obs-text",
        "keep-alive",
        "hundred",
    ],
)
async def test_header_fields_in_any_valid_form_are_read_alike(
    conformance_server: McpServer, fields: list[tuple[str, str]]
) -> None:
    body = encode(TOOLS_LIST)
    routing = [("MCP-Protocol-Version", MODERN), ("Mcp-Method", "tools/list")]
    async with connect(conformance_server) as wire:
        await wire.request("POST", ENDPOINT, [*fields, *routing], body)
        reply = await wire.final()
    assert (reply.status, reply.json()["id"], "tools" in reply.json()["result"]) == (200, 1, True)


async def test_an_http_1_0_request_is_answered_and_the_connection_closed(
    conformance_server: McpServer,
) -> None:
    body = encode(TOOLS_LIST)
    head = encode_request("POST", ENDPOINT, headers_of(body), body)
    async with connect(conformance_server) as wire:
        await wire.send(head.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1))
        replies = await wire.until_closed()
    assert [(r.status, r.json()["id"]) for r in replies] == [(200, 1)]


async def test_an_obs_folded_header_is_refused_or_unfolded_never_misread(
    conformance_server: McpServer,
) -> None:
    """RFC 9112 section 5.2: reject with 400 or replace each obs-fold with spaces."""
    body = encode(TOOLS_LIST)
    fields = [*headers_of(body)[:-1], ("Mcp-Method", "tools/list\r\n x")]
    async with connect(conformance_server) as wire:
        await wire.request("POST", ENDPOINT, fields, body)
        reply = await wire.final()
    assert reply.status == 400


# --- KNOWN BUGS: each the smallest input the fuzz found ----------------------------------------


async def test_deeply_nested_arguments_to_a_tool_that_asks_for_input_leave_the_server_serving() -> (
    None
):
    message = request(
        "tools/call",
        "modern",
        name="test_input_required_result_elicitation",
        arguments={"a": nested(300)},
    )
    async with running() as server, httpx.AsyncClient() as http:
        headers = modern_headers_for(message, "none")
        first = await post(http, server.url, encode(message), headers)
        then = await post(
            http, server.url, encode(TOOLS_LIST), dict(headers_of(encode(TOOLS_LIST)))
        )
    assert first.status in (200, 400)
    assert then.status == 200


async def test_a_stateless_log_level_that_is_not_a_level_is_invalid_params(
    target: Target,
) -> None:
    meta = {**modern_meta(), LOG_LEVEL: "verbose"}
    message = request(
        "tools/call", "modern", name="test_tool_with_logging", arguments={}, _meta=meta
    )
    assert error_of(await send(target, message, "modern")) == (400, -32602, 1)


async def test_a_session_without_elicitation_is_never_sent_an_elicitation_request(
    target: Target,
) -> None:
    message = request("tools/call", "handshake", 5, name="test_input_required_result_elicitation")
    first = await first_message(target, message)
    assert first.get("method") != "elicitation/create", first
    assert first["id"] == 5


async def first_message(target: Target, message: Any) -> dict[str, Any]:
    """The first JSON-RPC message of the answer, without waiting for the rest."""
    headers = session_headers(target.session_id)
    with anyio.fail_after(READ_BOUND):
        async with target.http.stream(
            "POST", target.url, content=encode(message), headers=headers
        ) as response:
            if response.headers["content-type"] == "application/json":
                return json.loads(await response.aread())  # type: ignore[no-any-return]
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: ":
                    return json.loads(line[len("data: ") :])  # type: ignore[no-any-return]
    raise AssertionError("the stream ended without a message")


@pytest.mark.parametrize(
    "event_id",
    ["abc_\xb2", "abc_" + "9" * 5000, "abc_" + "0" * 19],
    ids=["superscript", "5000 digits", "19 digits"],
)
async def test_a_last_event_id_whose_number_is_no_sequence_number_is_not_found(
    conformance_server: McpServer, event_id: str
) -> None:
    session_id = await open_session(conformance_server)
    fields = {
        "Accept": "text/event-stream",
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": LATEST,
        "Last-Event-ID": event_id,
    }
    async with connect(conformance_server) as wire:
        await wire.request("GET", ENDPOINT, fields)
        reply = await wire.final()
    assert (reply.status, reply.json()["error"]["code"]) == (404, -32600)
