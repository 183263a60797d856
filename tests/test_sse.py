"""Server-Sent Events framing: the exact bytes of each kind of event."""

from __future__ import annotations

import pytest

from sp00ky_mcp.engine import sse
from sp00ky_mcp.engine.jsonrpc import encode_result


def test_the_content_type_is_text_event_stream() -> None:
    assert sse.CONTENT_TYPE == "text/event-stream"


def test_a_keepalive_is_a_comment_line_and_a_blank_line() -> None:
    assert sse.KEEPALIVE == b": keep-alive\n\n"


def test_an_event_without_id_has_only_the_event_and_data_lines() -> None:
    assert sse.event(b'{"a":1}') == b'event: message\ndata: {"a":1}\n\n'


def test_an_event_with_id_puts_the_id_line_first() -> None:
    assert sse.event(b'{"a":1}', "s1-7") == b'id: s1-7\nevent: message\ndata: {"a":1}\n\n'


def test_an_empty_event_id_is_still_written() -> None:
    assert sse.event(b"{}", "") == b"id: \nevent: message\ndata: {}\n\n"


def test_an_event_carries_an_encoded_json_rpc_message_on_one_data_line() -> None:
    payload = encode_result(1, {"content": [{"type": "text", "text": "a\nb"}]})
    framed = sse.event(payload, "0")
    assert framed == (
        b'id: 0\nevent: message\ndata: {"jsonrpc":"2.0","id":1,"result":'
        b'{"content":[{"type":"text","text":"a\\nb"}]}}\n\n'
    )
    assert framed.count(b"\n") == 4


def test_a_non_ascii_event_id_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        sse.event(b"{}", "é")


def test_a_priming_event_has_an_id_and_empty_data() -> None:
    assert sse.priming("stream-1-0") == b"id: stream-1-0\ndata: \n\n"


def test_a_priming_event_with_retry_puts_retry_between_id_and_data() -> None:
    assert sse.priming("stream-1-0", 1000) == b"id: stream-1-0\nretry: 1000\ndata: \n\n"


def test_a_priming_event_with_zero_retry_still_writes_retry() -> None:
    assert sse.priming("p", 0) == b"id: p\nretry: 0\ndata: \n\n"


def test_a_priming_event_has_no_event_type_line() -> None:
    assert b"event:" not in sse.priming("p", 5)
