"""OpenTelemetry spans (the `[otel]` extra, switched on with `--otel`): one span per JSON-RPC
request and one per tool call, named and attributed by the MCP semantic conventions
(`mcp.method.name`, `mcp.session.id`, `mcp.protocol.version`, `jsonrpc.request.id`,
`gen_ai.tool.name`, `gen_ai.operation.name`, `error.type`), in the trace the client names in
`params._meta` (`traceparent`, `tracestate`) when it sends one.  Without the extra, or without
`--otel`, nothing here runs: the server pays nothing for it.

Where the spans go is the OpenTelemetry SDK's business (its exporter, set up by the operator,
for example with `opentelemetry-instrument` and the OTEL_* variables).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .context import CallContext

INSTRUMENTATION = "sp00ky_mcp"


def available() -> bool:
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


class Tracing:
    """Spans through the OpenTelemetry API (which must be importable: see `available`)."""

    def __init__(self) -> None:
        from opentelemetry import propagate, trace

        self.trace = trace
        self.propagate = propagate
        self.tracer = trace.get_tracer(INSTRUMENTATION)

    @contextmanager
    def request(
        self, method: str, request_id: Any, params: dict[str, Any], ctx: CallContext
    ) -> Iterator[Any]:
        """A server span around one request, in the client's trace when `_meta` names it."""
        tool = params.get("name") if method == "tools/call" else None
        name = f"{method} {tool}" if isinstance(tool, str) else method
        meta = params.get("_meta")
        carrier = (
            {k: v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}
        )
        parent = self.propagate.extract(carrier)
        attributes: dict[str, Any] = {
            "mcp.method.name": method,
            "mcp.protocol.version": ctx.protocol_version,
            "jsonrpc.request.id": str(request_id),
        }
        if ctx.session_id or getattr(ctx.session, "id", None):
            attributes["mcp.session.id"] = ctx.session_id or ctx.session.id
        if isinstance(tool, str):
            attributes["gen_ai.tool.name"] = tool
            attributes["gen_ai.operation.name"] = "execute_tool"
        kind = self.trace.SpanKind.SERVER
        with self.tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=attributes
        ) as span:
            yield span

    def failed(self, span: Any, code: int) -> None:
        span.set_attribute("error.type", str(code))
        span.set_status(self.trace.Status(self.trace.StatusCode.ERROR))

    def tool_ran(self, tool: str, outcome: str, started: float) -> None:
        """A span for the tool's own run, inside its request's span, from `started`
        (perf_counter) until now."""
        now_ns = time.time_ns()
        began_ns = now_ns - int((time.perf_counter() - started) * 1e9)
        attributes = {"gen_ai.tool.name": tool, "gen_ai.operation.name": "execute_tool"}
        span = self.tracer.start_span(
            f"execute_tool {tool}", start_time=began_ns, attributes=attributes
        )
        if outcome != "ok":
            span.set_attribute("error.type", "tool_error" if outcome == "error" else outcome)
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR))
        span.end(end_time=now_ns)
