"""Server-Sent Events encoding (HTML Living Standard, "Server-sent events", 9.2.5).  Pure.

Event data is a single JSON text; orjson never emits a newline, so one `data:` line suffices.
"""

from __future__ import annotations

CONTENT_TYPE = "text/event-stream"
# X-Accel-Buffering: proxies must pass events on as they come (2026-07-28 transports: SHOULD).
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = b": keep-alive\n\n"


def event(data: bytes, event_id: str | None = None) -> bytes:
    head = b"id: " + event_id.encode("ascii") + b"\n" if event_id is not None else b""
    return head + b"event: message\ndata: " + data + b"\n\n"


def priming(event_id: str, retry_ms: int | None = None) -> bytes:
    """An event with an id and empty data: it primes the client's Last-Event-ID for resumption
    (2025-11-25 transports, "Sending Messages to the Server", item 6)."""
    retry = b"retry: " + str(retry_ms).encode("ascii") + b"\n" if retry_ms is not None else b""
    return b"id: " + event_id.encode("ascii") + b"\n" + retry + b"data: \n\n"
