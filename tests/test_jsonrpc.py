"""JSON-RPC 2.0 framing: decoding, classification and the exact bytes of every encoder."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sp00ky_mcp.engine.errors import INVALID_REQUEST, PARSE_ERROR, JsonRpcError
from sp00ky_mcp.engine.jsonrpc import (
    Invalid,
    Notification,
    Request,
    Response,
    classify,
    decode_json,
    encode_error,
    encode_notification,
    encode_request,
    encode_result,
    readable_id,
    too_deep,
)

EXPECTED_OBJECT = "Invalid Request: expected an object."
BAD_VERSION = 'Invalid Request: "jsonrpc" must be exactly "2.0".'
NO_KIND = 'Invalid Request: a message needs "method", "result" or "error".'
BAD_METHOD = 'Invalid Request: "method" must be a string.'
BAD_PARAMS = 'Invalid Request: "params" must be an object.'
BAD_ID = 'Invalid Request: "id" must be a string or an integer.'
BAD_RESPONSE = "Invalid Request: a response needs an id and one of result or error."
BAD_ERROR = 'Invalid Request: "error" must be an object.'


def invalid_parts(message: object) -> tuple[Any, int, str]:
    """The id, code and message of an `Invalid`, so one assert compares all three."""
    assert isinstance(message, Invalid)
    return message.id, message.error.code, message.error.message


# decode_json


def test_a_json_object_body_decodes_to_a_dict() -> None:
    assert decode_json(b'{"jsonrpc":"2.0","id":1,"method":"ping"}') == {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "ping",
    }


TOO_DEEP = (
    "Invalid Request: arrays and objects may nest at most 128 levels deep; send a flatter body."
)


def nested(depth: int) -> bytes:
    """`{}` inside arrays, `depth` levels in all."""
    return b"[" * (depth - 1) + b"{}" + b"]" * (depth - 1)


def test_arrays_and_objects_may_nest_128_levels_deep() -> None:
    assert decode_json(nested(128)) == orjson.loads(nested(128))


def test_a_body_nesting_deeper_than_128_levels_is_an_invalid_request() -> None:
    with pytest.raises(JsonRpcError) as caught:
        decode_json(b'{"params":{"a":' + nested(128) + b"}}")
    assert (caught.value.code, caught.value.message) == (INVALID_REQUEST, TOO_DEEP)


def test_brackets_inside_strings_and_many_shallow_values_are_not_nesting() -> None:
    body = orjson.dumps({"text": "[{" * 500, "items": [[{}]] * 500})
    assert decode_json(body) == orjson.loads(body)


@pytest.mark.parametrize(
    ("value", "depth"), [(1, 0), ({}, 1), ([[]], 2), ({"a": [1, {"b": {}}]}, 4), ([1, [2, [3]]], 3)]
)
def test_too_deep_counts_each_array_and_object_as_a_level(value: object, depth: int) -> None:
    assert (too_deep(value, depth), too_deep(value, depth - 1) if depth else True) == (False, True)


def test_a_json_array_body_decodes_to_a_list() -> None:
    assert decode_json(b'[{"a":1},2]') == [{"a": 1}, 2]


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"jsonrpc":"2.0",}', b"not json", b"\xff\xfe", b"{'single':'quotes'}"],
)
def test_a_body_that_is_not_json_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(JsonRpcError) as caught:
        decode_json(body)
    assert caught.value.code == PARSE_ERROR == -32700
    assert caught.value.message == "Parse error: the request body is not valid JSON."
    assert caught.value.data is None


def test_the_parse_error_does_not_chain_the_decoder_exception() -> None:
    with pytest.raises(JsonRpcError) as caught:
        decode_json(b"{")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


# classify: what is not a message at all


@pytest.mark.parametrize("value", [[], [1], "ping", 1, 1.5, True, None])
def test_a_value_that_is_not_an_object_is_an_invalid_request_without_id(value: object) -> None:
    assert invalid_parts(classify(value)) == (None, INVALID_REQUEST, EXPECTED_OBJECT)
    assert INVALID_REQUEST == -32600


@pytest.mark.parametrize("version", [None, "1.0", "2", 2.0, "2.0 "])
def test_a_wrong_jsonrpc_version_is_an_invalid_request(version: object) -> None:
    obj: dict[str, Any] = {"id": 7, "method": "ping"}
    if version is not None:
        obj["jsonrpc"] = version
    assert invalid_parts(classify(obj)) == (7, -32600, BAD_VERSION)


def test_an_object_with_neither_method_nor_result_nor_error_is_an_invalid_request() -> None:
    assert invalid_parts(classify({"jsonrpc": "2.0", "id": "a"})) == ("a", -32600, NO_KIND)


# classify: requests and notifications


def test_a_request_with_an_integer_id_is_a_request() -> None:
    message = classify({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"a": 1}})
    assert message == Request(1, "tools/list", {"a": 1})


def test_a_request_with_a_string_id_is_a_request() -> None:
    message = classify({"jsonrpc": "2.0", "id": "req-1", "method": "ping"})
    assert message == Request("req-1", "ping", {})


def test_a_request_with_id_zero_is_a_request() -> None:
    assert classify({"jsonrpc": "2.0", "id": 0, "method": "ping"}) == Request(0, "ping", {})


def test_a_request_without_params_gets_empty_params() -> None:
    message = classify({"jsonrpc": "2.0", "id": 3, "method": "ping"})
    assert isinstance(message, Request)
    assert message.params == {}


def test_a_message_with_a_method_and_no_id_is_a_notification() -> None:
    message = classify(
        {"jsonrpc": "2.0", "method": "notifications/initialized", "params": {"x": [1]}}
    )
    assert message == Notification("notifications/initialized", {"x": [1]})


def test_a_notification_without_params_gets_empty_params() -> None:
    message = classify({"jsonrpc": "2.0", "method": "notifications/cancelled"})
    assert message == Notification("notifications/cancelled", {})


@pytest.mark.parametrize("method", [1, None, ["ping"], {"name": "ping"}, True])
def test_a_non_string_method_is_an_invalid_request(method: object) -> None:
    message = classify({"jsonrpc": "2.0", "id": 5, "method": method})
    assert invalid_parts(message) == (5, -32600, BAD_METHOD)


def test_a_bad_method_echoes_a_string_id() -> None:
    message = classify({"jsonrpc": "2.0", "id": "abc", "method": 42})
    assert invalid_parts(message) == ("abc", -32600, BAD_METHOD)


def test_a_bad_method_in_a_notification_has_no_id_to_echo() -> None:
    message = classify({"jsonrpc": "2.0", "method": 42})
    assert invalid_parts(message) == (None, -32600, BAD_METHOD)


@pytest.mark.parametrize("params", [[1, 2], [], "x", 1, None, True])
def test_params_that_are_not_an_object_are_an_invalid_request(params: object) -> None:
    message = classify({"jsonrpc": "2.0", "id": 9, "method": "ping", "params": params})
    assert invalid_parts(message) == (9, -32600, BAD_PARAMS)


def test_notification_params_that_are_not_an_object_are_an_invalid_request() -> None:
    message = classify({"jsonrpc": "2.0", "method": "notifications/x", "params": [1]})
    assert invalid_parts(message) == (None, -32600, BAD_PARAMS)


@pytest.mark.parametrize("request_id", [True, False])
def test_boolean_id_is_an_invalid_request(request_id: bool) -> None:
    message = classify({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
    assert invalid_parts(message) == (None, -32600, BAD_ID)


def test_null_id_is_an_invalid_request() -> None:
    message = classify({"jsonrpc": "2.0", "id": None, "method": "ping"})
    assert invalid_parts(message) == (None, -32600, BAD_ID)


@pytest.mark.parametrize("request_id", [1.5, 1.0, [1], {"n": 1}])
def test_an_id_that_is_neither_string_nor_integer_is_an_invalid_request(
    request_id: object,
) -> None:
    message = classify({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
    assert invalid_parts(message) == (None, -32600, BAD_ID)


# readable_id


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"id": 1}, 1),
        ({"id": -4}, -4),
        ({"id": "x"}, "x"),
        ({"id": ""}, ""),
        ({"id": True}, None),
        ({"id": None}, None),
        ({"id": 2.0}, None),
        ({}, None),
    ],
)
def test_only_strings_and_non_boolean_integers_are_readable_ids(
    obj: dict[str, Any], expected: object
) -> None:
    assert readable_id(obj) == expected


# classify: responses


def test_a_result_response_is_a_response() -> None:
    message = classify({"jsonrpc": "2.0", "id": 4, "result": {"ok": True}})
    assert message == Response(4, {"ok": True}, None)


def test_a_null_result_is_still_a_result_response() -> None:
    assert classify({"jsonrpc": "2.0", "id": "r", "result": None}) == Response("r", None, None)


def test_an_error_response_is_a_response() -> None:
    error = {"code": -1, "message": "User rejected"}
    message = classify({"jsonrpc": "2.0", "id": 4, "error": error})
    assert message == Response(4, None, error)


def test_a_response_with_both_result_and_error_is_an_invalid_request() -> None:
    obj = {"jsonrpc": "2.0", "id": 4, "result": {}, "error": {"code": 1, "message": "m"}}
    assert invalid_parts(classify(obj)) == (4, -32600, BAD_RESPONSE)


@pytest.mark.parametrize("extra", [{}, {"id": None}, {"id": True}])
def test_a_response_without_a_usable_id_is_an_invalid_request(extra: dict[str, Any]) -> None:
    obj = {"jsonrpc": "2.0", "result": {}, **extra}
    assert invalid_parts(classify(obj)) == (None, -32600, BAD_RESPONSE)


@pytest.mark.parametrize("error", ["boom", 1, [1], True])
def test_an_error_that_is_not_an_object_is_an_invalid_request(error: object) -> None:
    message = classify({"jsonrpc": "2.0", "id": 4, "error": error})
    assert invalid_parts(message) == (4, -32600, BAD_ERROR)


def test_a_null_error_is_an_invalid_request() -> None:
    message = classify({"jsonrpc": "2.0", "id": 4, "error": None})
    assert invalid_parts(message) == (4, -32600, BAD_ERROR)


def test_a_method_wins_over_result_when_both_are_present() -> None:
    message = classify({"jsonrpc": "2.0", "id": 1, "method": "ping", "result": {}})
    assert message == Request(1, "ping", {})


# encoders: exact bytes


def test_encode_result_writes_the_exact_bytes() -> None:
    assert encode_result(1, {"tools": []}) == b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}'


def test_encode_result_keeps_a_string_id_and_an_empty_result() -> None:
    assert encode_result("a-1", {}) == b'{"jsonrpc":"2.0","id":"a-1","result":{}}'


def test_encode_error_writes_code_and_message_without_data() -> None:
    error = JsonRpcError(-32601, "Method not found: foo.")
    assert encode_error(7, error) == (
        b'{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"Method not found: foo."}}'
    )


def test_encode_error_includes_data_when_present() -> None:
    error = JsonRpcError(-32022, "Unsupported.", {"supported": ["2026-07-28"]})
    assert encode_error("x", error) == (
        b'{"jsonrpc":"2.0","id":"x","error":{"code":-32022,"message":"Unsupported.",'
        b'"data":{"supported":["2026-07-28"]}}}'
    )


def test_encode_error_with_no_id_writes_a_null_id() -> None:
    error = JsonRpcError(-32700, "Parse error: the request body is not valid JSON.")
    assert encode_error(None, error) == (
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,'
        b'"message":"Parse error: the request body is not valid JSON."}}'
    )


def test_encode_request_writes_the_exact_bytes() -> None:
    assert encode_request(3, "roots/list", {}) == (
        b'{"jsonrpc":"2.0","id":3,"method":"roots/list","params":{}}'
    )


def test_encode_request_keeps_params_in_insertion_order() -> None:
    params = {"message": "Name?", "requestedSchema": {"type": "object"}}
    assert encode_request("s-1", "elicitation/create", params) == (
        b'{"jsonrpc":"2.0","id":"s-1","method":"elicitation/create",'
        b'"params":{"message":"Name?","requestedSchema":{"type":"object"}}}'
    )


def test_encode_notification_writes_the_exact_bytes_without_an_id() -> None:
    params = {"progressToken": "t", "progress": 1}
    assert encode_notification("notifications/progress", params) == (
        b'{"jsonrpc":"2.0","method":"notifications/progress",'
        b'"params":{"progressToken":"t","progress":1}}'
    )


def test_encoded_text_is_utf8_without_escapes_or_newlines() -> None:
    encoded = encode_result(1, {"text": "héllo\n👻"})
    assert encoded == '{"jsonrpc":"2.0","id":1,"result":{"text":"héllo\\n👻"}}'.encode()
    assert b"\n" not in encoded


def test_an_encoded_request_classifies_back_to_the_same_request() -> None:
    encoded = encode_request(11, "sampling/createMessage", {"maxTokens": 5})
    assert classify(decode_json(encoded)) == Request(11, "sampling/createMessage", {"maxTokens": 5})
