"""Streamable HTTP decisions: Host/Origin, content negotiation, versions, eras and headers."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sp00ky_mcp.engine import transport
from sp00ky_mcp.engine.errors import HttpError, JsonRpcError
from sp00ky_mcp.engine.jsonrpc import Invalid, Notification, Request, Response
from sp00ky_mcp.engine.transport import (
    Batch,
    accepts,
    allowed_hosts,
    check_batch,
    check_get_headers,
    check_host,
    check_origin,
    check_post_headers,
    check_routing_headers,
    choose_era,
    decode_header_value,
    header_version,
    host_name,
    media_types,
    meta_of,
    modern_version,
    prefers_sse,
    read_messages,
)
from sp00ky_mcp.engine.versions import Era

PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"
BOTH = "application/json, text/event-stream"
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
SUPPORTED = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"]

MISDIRECTED = (
    "Misdirected request: the Host header names a host this server does not serve; "
    "add it with --allowed-host."
)
FORBIDDEN_ORIGIN = "Forbidden: this Origin is not allowed; add it with --allowed-origin."
NOT_ACCEPTABLE_POST = (
    "Not Acceptable: the Accept header must list both application/json and text/event-stream."
)
UNSUPPORTED_MEDIA = "Unsupported Media Type: send the body as application/json."
NOT_ACCEPTABLE_GET = "Not Acceptable: a GET must accept text/event-stream."


def http_parts(error: object) -> tuple[int, str, int | None, tuple[tuple[str, str], ...]]:
    assert isinstance(error, HttpError)
    return error.status, error.message, error.rpc_code, error.headers


def rpc_parts(error: object) -> tuple[int, str, Any]:
    assert isinstance(error, JsonRpcError)
    return error.code, error.message, error.data


def request(method: str = "tools/list", params: dict[str, Any] | None = None) -> Request:
    return Request(1, method, params if params is not None else {})


def single(message: Request | Notification | Response | Invalid) -> Batch:
    return Batch((message,), False)


def with_meta(meta: dict[str, Any], method: str = "tools/list", **params: Any) -> Request:
    return Request(1, method, {"_meta": meta, **params})


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


# allowed_hosts


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_a_loopback_bind_allows_every_loopback_name(bind: str) -> None:
    assert allowed_hosts((), bind, None) == LOOPBACK


@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
def test_a_wildcard_bind_allows_only_configured_names(bind: str) -> None:
    assert allowed_hosts(("MCP.Example.com",), bind, None) == frozenset({"mcp.example.com"})


def test_a_wildcard_bind_with_nothing_configured_allows_no_names() -> None:
    assert allowed_hosts((), "0.0.0.0", None) == frozenset()


def test_a_specific_bind_address_is_itself_allowed() -> None:
    assert allowed_hosts((), "10.0.0.5", None) == frozenset({"10.0.0.5"})


def test_the_public_url_host_is_allowed_without_scheme_port_or_path() -> None:
    hosts = allowed_hosts(("extra.internal",), "0.0.0.0", "https://MCP.Sp00ky.cloud:8443/v1/mcp")
    assert hosts == frozenset({"mcp.sp00ky.cloud", "extra.internal"})


def test_an_ipv6_public_url_contributes_the_bare_address() -> None:
    assert allowed_hosts((), "0.0.0.0", "http://[2001:db8::1]:8080/") == frozenset({"2001:db8::1"})


def test_loopback_names_are_kept_alongside_the_public_url() -> None:
    hosts = allowed_hosts((), "127.0.0.1", "https://mcp.example.com")
    assert hosts == LOOPBACK | {"mcp.example.com"}


# host_name and check_host


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("localhost:8765", "localhost"),
        ("LocalHost:8765", "localhost"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::1]:8765", "::1"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("::1", "::1"),
        ("[::1", "[::1"),
    ],
)
def test_the_host_name_drops_the_port_and_ipv6_brackets(header: str, name: str) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8765", "127.0.0.1:8765", "[::1]:8765", "LOCALHOST"]
)
def test_a_loopback_host_header_is_accepted_by_a_loopback_server(host: str) -> None:
    assert check_host(host, LOOPBACK) is None


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "localhost.evil.example", "[::2]:8765", ""]
)
def test_a_foreign_host_header_is_misdirected(host: str) -> None:
    assert http_parts(check_host(host, LOOPBACK)) == (421, MISDIRECTED, None, ())


def test_a_missing_host_header_is_misdirected() -> None:
    assert http_parts(check_host(None, LOOPBACK)) == (421, MISDIRECTED, None, ())


def test_no_allowed_hosts_means_the_host_is_not_checked() -> None:
    assert check_host("anything.example", frozenset()) is None
    assert check_host(None, frozenset()) is None


def test_the_public_url_host_is_accepted_on_any_port() -> None:
    hosts = allowed_hosts((), "0.0.0.0", "https://mcp.example.com")
    assert check_host("mcp.example.com:443", hosts) is None


# check_origin


def test_a_request_without_origin_passes() -> None:
    assert check_origin(None, LOOPBACK, frozenset()) is None


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost",
        "http://localhost:3000",
        "https://127.0.0.1:8443",
        "http://[::1]:6274",
        "HTTP://LOCALHOST:3000",
    ],
)
def test_an_origin_on_one_of_our_hosts_passes(origin: str) -> None:
    assert check_origin(origin, LOOPBACK, frozenset()) is None


def test_a_configured_origin_passes_with_or_without_a_trailing_slash() -> None:
    origins = frozenset({"https://app.example.com"})
    assert check_origin("https://app.example.com", LOOPBACK, origins) is None
    assert check_origin("https://app.example.com/", LOOPBACK, origins) is None


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://localhost.evil.example",
        "null",
        "file://localhost",
        "chrome-extension://localhost",
        "https://app.example.com:444",
        "",
        "http://[::1",
        "http://[not-an-address]",
    ],
)
def test_any_other_origin_is_forbidden(origin: str) -> None:
    origins = frozenset({"https://app.example.com"})
    assert http_parts(check_origin(origin, LOOPBACK, origins)) == (
        403,
        FORBIDDEN_ORIGIN,
        None,
        (),
    )


def test_with_no_hosts_and_no_origins_every_origin_is_forbidden() -> None:
    error = check_origin("http://localhost", frozenset(), frozenset())
    assert http_parts(error) == (403, FORBIDDEN_ORIGIN, None, ())


# media types and accepts


def test_media_types_drop_parameters_whitespace_and_case() -> None:
    assert media_types(" Application/JSON ; q=0.9 ,text/event-stream;charset=utf-8") == {
        "application/json",
        "text/event-stream",
    }


@pytest.mark.parametrize("header", [None, ""])
def test_an_absent_header_has_no_media_types(header: str | None) -> None:
    assert media_types(header) == set()


@pytest.mark.parametrize(
    ("header", "wanted", "accepted"),
    [
        ("application/json", "application/json", True),
        ("application/json", "text/event-stream", False),
        ("*/*", "application/json", True),
        ("*/*", "text/event-stream", True),
        ("application/*", "application/json", True),
        ("application/*", "text/event-stream", False),
        ("text/*", "text/event-stream", True),
        ("application/json;q=0.5", "application/json", True),
        ("APPLICATION/JSON", "application/json", True),
        ("application/jsonx", "application/json", False),
        (None, "application/json", False),
    ],
)
def test_accepts_honours_exact_types_wildcards_and_parameters(
    header: str | None, wanted: str, accepted: bool
) -> None:
    assert accepts(header, wanted) is accepted


def test_a_type_with_zero_quality_is_not_accepted() -> None:
    assert accepts("application/json, text/event-stream;q=0", "text/event-stream") is False


# prefers_sse


@pytest.mark.parametrize(
    ("header", "preferred"),
    [
        ("text/event-stream, application/json", True),
        ("text/event-stream;q=0.9, application/json", False),
        ("text/event-stream", True),
        ("application/json, text/event-stream", False),
        ("Application/JSON, Text/Event-Stream", False),
        ("*/*", False),
        ("application/json", False),
        ("", False),
        (None, False),
    ],
)
def test_a_client_prefers_sse_when_it_lists_event_stream_before_json(
    header: str | None, preferred: bool
) -> None:
    assert prefers_sse(header) is preferred


# check_post_headers and check_get_headers


@pytest.mark.parametrize(
    "accept",
    [
        BOTH,
        "text/event-stream, application/json",
        "*/*",
        "application/json;q=0.9, text/event-stream;q=0.8",
        "application/*, text/*",
    ],
)
def test_a_post_accepting_json_and_sse_with_a_json_body_passes(accept: str) -> None:
    assert check_post_headers(accept, "application/json") is None


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_a_json_content_type_with_parameters_passes(content_type: str) -> None:
    assert check_post_headers(BOTH, content_type) is None


@pytest.mark.parametrize(
    "accept", [None, "", "application/json", "text/event-stream", "text/html", "application/*"]
)
def test_a_post_not_accepting_both_types_is_not_acceptable(accept: str | None) -> None:
    error = check_post_headers(accept, "application/json")
    assert http_parts(error) == (406, NOT_ACCEPTABLE_POST, -32600, ())


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/x-www-form-urlencoded"]
)
def test_a_post_with_a_non_json_body_is_an_unsupported_media_type(
    content_type: str | None,
) -> None:
    error = check_post_headers(BOTH, content_type)
    assert http_parts(error) == (415, UNSUPPORTED_MEDIA, -32600, ())


def test_accept_is_checked_before_content_type() -> None:
    error = check_post_headers("text/html", "text/plain")
    assert http_parts(error) == (406, NOT_ACCEPTABLE_POST, -32600, ())


@pytest.mark.parametrize("accept", ["text/event-stream", "*/*", "text/*", BOTH])
def test_a_get_accepting_sse_passes(accept: str) -> None:
    assert check_get_headers(accept) is None


@pytest.mark.parametrize("accept", [None, "application/json", "text/html"])
def test_a_get_not_accepting_sse_is_not_acceptable(accept: str | None) -> None:
    assert http_parts(check_get_headers(accept)) == (406, NOT_ACCEPTABLE_GET, -32600, ())


# header_version


def test_an_absent_version_header_means_2025_03_26() -> None:
    assert header_version(None) == "2025-03-26"


@pytest.mark.parametrize("version", SUPPORTED)
def test_a_supported_version_header_is_returned(version: str) -> None:
    assert header_version(version) == version


@pytest.mark.parametrize("version", ["2024-11-05", "", "2025-06-18 ", "latest"])
def test_an_unsupported_version_header_is_a_bad_request(version: str) -> None:
    assert http_parts(header_version(version)) == (
        400,
        f"Bad Request: unsupported MCP-Protocol-Version '{version}'; "
        "supported: 2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26.",
        -32600,
        (),
    )


# read_messages


def test_a_single_message_body_is_not_a_batch() -> None:
    batch = read_messages(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert batch == Batch((Request(1, "ping", {}),), False)


def test_an_array_body_is_a_batch_of_classified_messages() -> None:
    body = (
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"},'
        b'{"jsonrpc":"2.0","method":"notifications/initialized"},'
        b'{"jsonrpc":"2.0","id":"s","result":{}},'
        b"7]"
    )
    batch = read_messages(body)
    assert isinstance(batch, Batch)
    assert batch.is_batch is True
    assert batch.messages[:3] == (
        Request(1, "ping", {}),
        Notification("notifications/initialized", {}),
        Response("s", {}, None),
    )
    invalid = batch.messages[3]
    assert isinstance(invalid, Invalid)
    assert (invalid.id, invalid.error.code) == (None, -32600)


def test_a_batch_lists_its_requests_and_its_first_message() -> None:
    batch = read_messages(
        b'[{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"method":"a"},'
        b'{"jsonrpc":"2.0","id":3,"method":"b"}]'
    )
    assert isinstance(batch, Batch)
    assert batch.requests == (Request(2, "a", {}), Request(3, "b", {}))
    assert batch.first == Notification("n", {})


def test_an_empty_batch_is_a_bad_request() -> None:
    assert http_parts(read_messages(b"[]")) == (
        400,
        "Invalid Request: an empty batch.",
        -32600,
        (),
    )


@pytest.mark.parametrize("body", [b"", b"{", b"\xff"])
def test_a_body_that_is_not_json_is_a_parse_error_with_status_400(body: bytes) -> None:
    assert http_parts(read_messages(body)) == (
        400,
        "Parse error: the request body is not valid JSON.",
        -32700,
        (),
    )


def test_a_non_object_body_is_a_single_invalid_message() -> None:
    batch = read_messages(b'"ping"')
    assert isinstance(batch, Batch)
    assert batch.is_batch is False
    assert isinstance(batch.first, Invalid)


# meta_of


@pytest.mark.parametrize(
    ("message", "meta"),
    [
        (Request(1, "x", {"_meta": {"a": 1}}), {"a": 1}),
        (Notification("x", {"_meta": {"b": 2}}), {"b": 2}),
        (Request(1, "x", {}), {}),
        (Request(1, "x", {"_meta": [1]}), {}),
        (Request(1, "x", {"_meta": None}), {}),
        (Response(1, {"_meta": {"a": 1}}, None), {}),
    ],
)
def test_meta_is_the_params_meta_object_or_empty(message: Any, meta: dict[str, Any]) -> None:
    assert meta_of(message) == meta


# choose_era


def test_a_legacy_initialize_is_handshake() -> None:
    message = Request(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
    assert choose_era(single(message), {}) is Era.HANDSHAKE


def test_a_session_header_means_handshake_even_with_modern_signals() -> None:
    message = with_meta({PV: "2026-07-28"})
    headers = {"mcp-session-id": "abc", "mcp-protocol-version": "2026-07-28"}
    assert choose_era(single(message), headers) is Era.HANDSHAKE


def test_a_batch_means_handshake_even_with_modern_signals() -> None:
    batch = Batch((with_meta({PV: "2026-07-28"}), request("ping")), True)
    assert choose_era(batch, {"mcp-protocol-version": "2026-07-28"}) is Era.HANDSHAKE


def test_a_modern_version_header_means_modern() -> None:
    assert choose_era(single(request()), {"mcp-protocol-version": "2026-07-28"}) is Era.MODERN


@pytest.mark.parametrize("version", ["2099-01-01", "2024-11-05", "garbage"])
def test_a_version_header_that_is_not_a_handshake_version_means_modern(version: str) -> None:
    assert choose_era(single(request()), {"mcp-protocol-version": version}) is Era.MODERN


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18", "2025-03-26"])
def test_a_handshake_version_header_without_meta_means_handshake(version: str) -> None:
    assert choose_era(single(request()), {"mcp-protocol-version": version}) is Era.HANDSHAKE


def test_a_meta_protocol_version_means_modern() -> None:
    assert choose_era(single(with_meta({PV: "2026-07-28"})), {}) is Era.MODERN


def test_a_meta_protocol_version_wins_over_a_handshake_version_header() -> None:
    headers = {"mcp-protocol-version": "2025-11-25"}
    assert choose_era(single(with_meta({PV: "2026-07-28"})), headers) is Era.MODERN


@pytest.mark.parametrize("version", ["2025-06-18", None])
def test_any_meta_protocol_version_key_means_modern_so_it_is_refused_there(
    version: str | None,
) -> None:
    assert choose_era(single(with_meta({PV: version})), {}) is Era.MODERN


def test_an_initialize_with_a_meta_protocol_version_is_modern() -> None:
    message = with_meta({PV: "2026-07-28"}, method="initialize")
    assert choose_era(single(message), {}) is Era.MODERN


def test_a_meta_protocol_version_on_a_notification_means_modern() -> None:
    message = Notification("notifications/cancelled", {"_meta": {PV: "2026-07-28"}})
    assert choose_era(single(message), {}) is Era.MODERN


def test_other_meta_keys_do_not_mean_modern() -> None:
    assert choose_era(single(with_meta({"progressToken": 1, CAPS: {}})), {}) is Era.HANDSHAKE


def test_no_signal_at_all_means_handshake() -> None:
    assert choose_era(single(request()), {}) is Era.HANDSHAKE


# check_batch


def test_a_single_message_passes_under_every_version() -> None:
    for version in SUPPORTED:
        assert check_batch(single(request()), version) is None


def test_a_batch_passes_under_2025_03_26() -> None:
    assert check_batch(Batch((request(),), True), "2025-03-26") is None


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", "2026-07-28"])
def test_a_batch_is_a_bad_request_after_2025_03_26(version: str) -> None:
    assert http_parts(check_batch(Batch((request(),), True), version)) == (
        400,
        "Invalid Request: JSON-RPC batches are not supported by protocol version "
        f"{version}; send one message per request.",
        -32600,
        (),
    )


# modern_version

META_REQUIRED = (
    "Invalid params: _meta must carry 'io.modelcontextprotocol/protocolVersion' and "
    "'io.modelcontextprotocol/clientCapabilities' (an object, {} for none)."
)


def modern(version: Any = "2026-07-28", **meta: Any) -> Request:
    return with_meta({PV: version, CAPS: {}, **meta})


def test_a_matching_modern_header_and_meta_give_the_version() -> None:
    assert modern_version(modern(), "2026-07-28") == "2026-07-28"


def test_a_missing_version_header_is_a_header_mismatch() -> None:
    assert rpc_parts(modern_version(modern(), None)) == (
        -32020,
        "Header mismatch: the MCP-Protocol-Version header is required.",
        None,
    )


def test_a_missing_header_is_reported_before_missing_meta() -> None:
    assert rpc_parts(modern_version(request(), None))[0] == -32020


def test_a_header_that_differs_from_meta_is_a_header_mismatch() -> None:
    assert rpc_parts(modern_version(modern(), "2025-11-25")) == (
        -32020,
        "Header mismatch: MCP-Protocol-Version '2025-11-25' does not match the _meta "
        "protocol version '2026-07-28'.",
        None,
    )


def test_a_non_string_meta_version_never_matches_the_header() -> None:
    assert rpc_parts(modern_version(modern(20260728), "20260728")) == (
        -32020,
        "Header mismatch: MCP-Protocol-Version '20260728' does not match the _meta "
        "protocol version 20260728.",
        None,
    )


@pytest.mark.parametrize(
    "meta",
    [
        {CAPS: {}},
        {PV: None, CAPS: {}},
        {PV: "2026-07-28"},
        {PV: "2026-07-28", CAPS: None},
        {PV: "2026-07-28", CAPS: []},
        {PV: "2026-07-28", CAPS: "all"},
        {},
    ],
    ids=["no-version", "null-version", "no-caps", "null-caps", "list-caps", "string-caps", "empty"],
)
def test_meta_without_version_and_capabilities_object_is_invalid_params(
    meta: dict[str, Any],
) -> None:
    assert rpc_parts(modern_version(with_meta(meta), "2026-07-28")) == (
        -32602,
        META_REQUIRED,
        None,
    )


def test_a_request_without_meta_is_invalid_params() -> None:
    assert rpc_parts(modern_version(request(), "2026-07-28")) == (-32602, META_REQUIRED, None)


def test_missing_capabilities_are_reported_before_a_version_mismatch() -> None:
    message = with_meta({PV: "2026-07-28"})
    assert rpc_parts(modern_version(message, "2025-11-25"))[0] == -32602


@pytest.mark.parametrize("version", ["2025-11-25", "2025-03-26", "2030-01-01"])
def test_a_version_not_served_statelessly_is_unsupported(version: str) -> None:
    assert rpc_parts(modern_version(modern(version), version)) == (
        -32022,
        f"Unsupported protocol version: '{version}'; use one of the supported versions.",
        {"supported": SUPPORTED, "requested": version},
    )


def test_unsupported_version_lists_every_supported_version() -> None:
    error = transport.unsupported_version(None)
    assert error.to_wire() == {
        "code": -32022,
        "message": "Unsupported protocol version: None; use one of the supported versions.",
        "data": {"supported": SUPPORTED, "requested": None},
    }


# decode_header_value


@pytest.mark.parametrize("value", ["get_weather", "", "res://items/1", "=?base64?abc", "x?="])
def test_a_plain_header_value_is_returned_unchanged(value: str) -> None:
    assert decode_header_value(value) == value


@pytest.mark.parametrize("text", ["héllo", "天気", "👻 boo", " padded ", "plain"])
def test_a_base64_sentinel_value_decodes_to_utf8_text(text: str) -> None:
    assert decode_header_value(b64(text)) == text


def test_the_specification_example_decodes_to_a_literal_sentinel() -> None:
    assert decode_header_value("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=") == "=?base64?literal?="


@pytest.mark.parametrize(
    "value",
    [
        "=?base64?not base64!?=",
        "=?base64?aGk?=",
        "=?base64?PT9iYXNlNjQ_bGl0ZXJhbD89?=",
        "=?base64?/w==?=",
    ],
    ids=["bad-alphabet", "missing-padding", "urlsafe-alphabet", "not-utf8"],
)
def test_an_undecodable_sentinel_value_is_none(value: str) -> None:
    assert decode_header_value(value) is None


def test_the_sentinel_markers_are_case_sensitive() -> None:
    assert decode_header_value("=?BASE64?aGk=?=") == "=?BASE64?aGk=?="


# check_routing_headers


def test_a_matching_mcp_method_passes_for_a_method_without_a_name() -> None:
    assert check_routing_headers(request("tools/list"), {"mcp-method": "tools/list"}) is None


def test_a_missing_mcp_method_is_a_header_mismatch() -> None:
    assert rpc_parts(check_routing_headers(request("tools/list"), {})) == (
        -32020,
        "Header mismatch: the Mcp-Method header is required.",
        None,
    )


def test_a_different_mcp_method_is_a_header_mismatch() -> None:
    error = check_routing_headers(request("tools/list"), {"mcp-method": "tools/call"})
    assert rpc_parts(error) == (
        -32020,
        "Header mismatch: Mcp-Method 'tools/call' does not match the body's method.",
        None,
    )


def test_mcp_method_is_compared_case_sensitively() -> None:
    error = check_routing_headers(request("tools/list"), {"mcp-method": "Tools/List"})
    assert rpc_parts(error)[0] == -32020


@pytest.mark.parametrize(
    ("method", "field", "value"),
    [
        ("tools/call", "name", "get_weather"),
        ("prompts/get", "name", "summarize"),
        ("resources/read", "uri", "res://items/1"),
    ],
)
def test_a_matching_mcp_name_passes(method: str, field: str, value: str) -> None:
    message = request(method, {field: value})
    assert check_routing_headers(message, {"mcp-method": method, "mcp-name": value}) is None


@pytest.mark.parametrize("method", ["tools/call", "prompts/get", "resources/read"])
def test_a_missing_mcp_name_is_a_header_mismatch(method: str) -> None:
    message = request(method, {"name": "x", "uri": "x"})
    assert rpc_parts(check_routing_headers(message, {"mcp-method": method})) == (
        -32020,
        f"Header mismatch: the Mcp-Name header is required for {method}.",
        None,
    )


@pytest.mark.parametrize(
    ("method", "field"),
    [("tools/call", "name"), ("prompts/get", "name"), ("resources/read", "uri")],
)
def test_a_different_mcp_name_is_a_header_mismatch(method: str, field: str) -> None:
    message = request(method, {field: "right"})
    headers = {"mcp-method": method, "mcp-name": "wrong"}
    assert rpc_parts(check_routing_headers(message, headers)) == (
        -32020,
        f"Header mismatch: Mcp-Name does not match the body's '{field}'.",
        None,
    )


def test_resources_read_compares_mcp_name_with_the_uri_not_the_name() -> None:
    message = request("resources/read", {"uri": "res://a", "name": "other"})
    headers = {"mcp-method": "resources/read", "mcp-name": "other"}
    assert rpc_parts(check_routing_headers(message, headers))[1] == (
        "Header mismatch: Mcp-Name does not match the body's 'uri'."
    )


def test_a_base64_encoded_mcp_name_is_decoded_before_comparing() -> None:
    message = request("tools/call", {"name": "météo"})
    headers = {"mcp-method": "tools/call", "mcp-name": b64("météo")}
    assert check_routing_headers(message, headers) is None


def test_a_base64_encoded_resource_uri_is_decoded_before_comparing() -> None:
    message = request("resources/read", {"uri": "res://docs/Ünïcode"})
    headers = {"mcp-method": "resources/read", "mcp-name": b64("res://docs/Ünïcode")}
    assert check_routing_headers(message, headers) is None


def test_a_raw_sentinel_is_not_compared_undecoded() -> None:
    sentinel = b64("tool")
    message = request("tools/call", {"name": sentinel})
    headers = {"mcp-method": "tools/call", "mcp-name": sentinel}
    assert rpc_parts(check_routing_headers(message, headers))[0] == -32020


def test_an_undecodable_mcp_name_is_a_header_mismatch() -> None:
    message = request("tools/call", {"name": "tool"})
    headers = {"mcp-method": "tools/call", "mcp-name": "=?base64?%%%?="}
    assert rpc_parts(check_routing_headers(message, headers)) == (
        -32020,
        "Header mismatch: Mcp-Name does not match the body's 'name'.",
        None,
    )


def test_an_undecodable_mcp_name_is_a_mismatch_even_when_the_body_has_no_name() -> None:
    message = request("tools/call", {"arguments": {}})
    headers = {"mcp-method": "tools/call", "mcp-name": "=?base64?%%%?="}
    assert rpc_parts(check_routing_headers(message, headers))[0] == -32020


def test_a_name_header_is_ignored_for_methods_without_a_name() -> None:
    headers = {"mcp-method": "tools/list", "mcp-name": "whatever"}
    assert check_routing_headers(request("tools/list"), headers) is None


# Mcp-Param-{Name} headers

PARAM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "dry_run": {"type": "boolean", "x-mcp-header": "Dry-Run"},
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "note": {"type": "string"},
        "bad": {"type": "string", "x-mcp-header": 7},
    },
}


def test_header_params_map_annotated_arguments_to_header_names() -> None:
    assert transport.header_params(PARAM_SCHEMA) == {
        "region": "Region",
        "dry_run": "Dry-Run",
        "count": "Count",
    }


@pytest.mark.parametrize("schema", [{}, {"properties": []}, {"properties": {"a": "x"}}])
def test_a_schema_without_annotated_properties_has_no_header_params(
    schema: dict[str, Any],
) -> None:
    assert transport.header_params(schema) == {}


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (-1, "-1"),
        (3.0, "3"),
        (2.5, "2.5"),
        ("eu", "eu"),
    ],
)
def test_header_form_writes_booleans_lowercase_and_integral_numbers_in_decimal(
    value: object, form: str
) -> None:
    assert transport.header_form(value) == form


def test_mirrored_argument_headers_pass() -> None:
    arguments = {"region": "eu-west", "dry_run": False, "count": 3, "note": "n"}
    headers = {"mcp-param-region": "eu-west", "mcp-param-dry-run": "false", "mcp-param-count": "3"}
    assert transport.check_param_headers(PARAM_SCHEMA, arguments, headers) is None


def test_absent_or_null_arguments_need_no_headers() -> None:
    assert transport.check_param_headers(PARAM_SCHEMA, {"region": None}, {}) is None
    assert transport.check_param_headers(PARAM_SCHEMA, None, {}) is None


def test_a_base64_encoded_param_header_is_decoded_before_comparing() -> None:
    headers = {"mcp-param-region": b64("zürich")}
    assert transport.check_param_headers(PARAM_SCHEMA, {"region": "zürich"}, headers) is None


def test_a_missing_param_header_is_a_header_mismatch() -> None:
    error = transport.check_param_headers(PARAM_SCHEMA, {"count": 1}, {})
    assert rpc_parts(error) == (
        -32020,
        "Header mismatch: the Mcp-Param-Count header is required when 'count' is set.",
        None,
    )


@pytest.mark.parametrize(
    ("arguments", "headers", "header", "argument"),
    [
        ({"region": "eu"}, {"mcp-param-region": "us"}, "Region", "region"),
        ({}, {"mcp-param-region": "eu"}, "Region", "region"),
        ({"region": None}, {"mcp-param-region": "eu"}, "Region", "region"),
    ],
)
def test_a_param_header_that_does_not_mirror_its_argument_is_a_header_mismatch(
    arguments: dict[str, Any], headers: dict[str, str], header: str, argument: str
) -> None:
    assert rpc_parts(transport.check_param_headers(PARAM_SCHEMA, arguments, headers)) == (
        -32020,
        f"Header mismatch: Mcp-Param-{header} does not match the argument '{argument}'.",
        None,
    )


@pytest.mark.parametrize("sent", ["zürich", "eu\twest"])
def test_a_param_header_with_non_ascii_or_control_characters_is_a_header_mismatch(
    sent: str,
) -> None:
    error = transport.check_param_headers(PARAM_SCHEMA, {"region": "x"}, {"mcp-param-region": sent})
    assert rpc_parts(error) == (
        -32020,
        "Header mismatch: the Mcp-Param-Region header has invalid characters.",
        None,
    )
