"""With --otel, each request and each tool call is an OpenTelemetry span named and attributed
by the MCP semantic conventions, in the trace the client names in `_meta`; without it, none."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sp00ky_mcp.engine.config import ServerConfig
from sp00ky_mcp.engine.fixtures import conformance_catalogue
from sp00ky_mcp.engine.server import McpServer, anonymous
from tests.wire import BOTH, initialize_body

pytestmark = pytest.mark.anyio
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    trace.set_tracer_provider(provider)
    yield exported
    provider.shutdown()


@pytest.fixture
async def traced(exporter: InMemorySpanExporter) -> AsyncIterator[McpServer]:
    exporter.clear()
    config = ServerConfig(port=0, profile="conformance", traces=True)
    server = McpServer(config, conformance_catalogue(), authenticate=anonymous())
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        yield server
        server.shutdown()


async def call(server: McpServer, name: str, meta: dict[str, Any]) -> str:
    plain = {"accept": BOTH, "content-type": "application/json"}
    async with httpx.AsyncClient() as http:
        opened = await http.post(server.url, content=initialize_body(), headers=plain)
        session_id = opened.headers["mcp-session-id"]
        params = {"name": name, "arguments": {}, "_meta": meta}
        body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
        await http.post(server.url, json=body, headers=plain | {"mcp-session-id": session_id})
    return session_id


async def test_a_tool_call_is_a_server_span_in_the_clients_trace_with_its_tool_span(
    traced: McpServer, exporter: InMemorySpanExporter
) -> None:
    meta = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
    session_id = await call(traced, "test_simple_text", meta)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    request, tool = spans["tools/call test_simple_text"], spans["execute_tool test_simple_text"]
    assert request.kind is trace.SpanKind.SERVER
    assert format(request.context.trace_id, "032x") == TRACE
    assert request.parent is not None and format(request.parent.span_id, "016x") == PARENT
    assert dict(request.attributes or {}) == {
        "mcp.method.name": "tools/call",
        "mcp.protocol.version": "2025-11-25",
        "jsonrpc.request.id": "7",
        "mcp.session.id": session_id,
        "gen_ai.tool.name": "test_simple_text",
        "gen_ai.operation.name": "execute_tool",
    }
    assert tool.parent is not None and tool.parent.span_id == request.context.span_id
    assert "initialize" in spans


async def test_a_failed_request_is_marked_with_its_error_code(
    traced: McpServer, exporter: InMemorySpanExporter
) -> None:
    await call(traced, "no_such_tool", {})
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "tools/call no_such_tool"]
    assert (span.attributes or {})["error.type"] == "-32602"
    assert span.status.status_code is trace.StatusCode.ERROR


async def test_without_otel_no_span_is_made(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    server = McpServer(
        ServerConfig(port=0, profile="conformance"),
        conformance_catalogue(),
        authenticate=anonymous(),
    )
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        await call(server, "test_simple_text", {})
        server.shutdown()
    assert exporter.get_finished_spans() == ()
