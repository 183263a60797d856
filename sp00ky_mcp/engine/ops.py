"""What an operator sees of a running server: liveness and readiness, metrics, and one access
line per request and one audit line per tool call.

Lines are written to standard error together, at most a tenth of a second after the first of
them (a write per line would cost a system call per request), and at shutdown;
human-readable by default, one JSON object per line with `--log-format json`.  Nothing secret
is written: a token is named by its id and name (never its value), a session by the first
eight characters of its id, and a tool call by its argument names (never their values).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import orjson

from .metrics import Counter, Gauge, Histogram, Registry, Timings
from .protocol import verdict

if TYPE_CHECKING:
    from .catalogue import Tool
    from .context import CallContext
    from .protocol import ToolResult

Check = Callable[[], Awaitable[object]]
# How long a readiness check may take, and how long its answer is reused: a load balancer
# probing every replica often costs the store one query per second at most.
CHECK_SECONDS = 2.0
READY_REUSE_SECONDS = 1.0
# The HTTP methods counted by name; a client may send any token as a method (RFC 9110
# section 9.1), and each name counted would be a series kept for good.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
# How long access and audit lines may wait to be written, and how many may wait.
FLUSH_SECONDS = 0.1
FLUSH_LINES = 512


# What the server learns of a request as it answers it: its access line, filled in as the
# request goes (`Operations.begin`), keys in the line's order.  A plain dict, because the
# line is then the dict itself, encoded with the others when written: no copy, no formatter.
# Until the request is answered, "duration_ms" holds the time it began (perf_counter).
RequestFacts = dict[str, Any]


def request_facts(started: float, request: str, era: str = "-", method: str = "-") -> RequestFacts:
    return {
        "ts": None,
        "kind": "access",
        "request": request,
        "http": None,
        "path": None,
        "method": method,
        "era": era,
        "session": None,
        "tool": None,
        "token_id": None,
        "token_name": None,
        "tenant": None,
        "status": 0,
        "outcome": None,
        "duration_ms": started,
    }


# --- readiness -------------------------------------------------------------------------------


@dataclass
class Readiness:
    """Whether what the server depends on (its store, Redis) answers now."""

    checks: dict[str, Check] = field(default_factory=dict)
    _answer: tuple[float, bool, dict[str, str]] | None = None
    _probing: asyncio.Future[tuple[bool, dict[str, str]]] | None = None

    async def probe(self) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        if self._answer is not None and now - self._answer[0] < READY_REUSE_SECONDS:
            return self._answer[1], self._answer[2]
        if self._probing is None:  # concurrent probes share one round of checks
            self._probing = asyncio.ensure_future(self._run())
            self._probing.add_done_callback(self._probed)
        return await asyncio.shield(self._probing)

    def _probed(self, probing: asyncio.Future[tuple[bool, dict[str, str]]]) -> None:
        self._probing = None
        if not probing.cancelled() and probing.exception() is None:
            ready, states = probing.result()
            self._answer = (time.monotonic(), ready, states)

    async def _run(self) -> tuple[bool, dict[str, str]]:
        states: dict[str, str] = {}
        async with anyio.create_task_group() as tasks:
            for name, check in self.checks.items():
                tasks.start_soon(self._check, name, check, states)
        return all(state == "ok" for state in states.values()), dict(sorted(states.items()))

    @staticmethod
    async def _check(name: str, check: Check, states: dict[str, str]) -> None:
        states[name] = "unavailable"
        try:
            with anyio.fail_after(CHECK_SECONDS):
                await check()
        except Exception:
            return
        states[name] = "ok"


# --- lines -----------------------------------------------------------------------------------


class LineWriter:
    """Lines kept as their records (flat dicts whose first keys are "ts" and "kind") for up
    to `FLUSH_SECONDS` (or `FLUSH_LINES` lines), then written together: a write per request
    would cost a system call each, and one encoder pass over many records costs a request's
    hot path a fraction of formatting its lines one by one."""

    def __init__(self, stream: TextIO | None = None, json: bool = False) -> None:
        self.stream = stream
        self.json = json
        self._records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        records = self._records
        records.append(record)
        if len(records) == 1:
            try:
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no loop: at once
                self.flush()
        elif len(records) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        records, self._records = self._records, []
        if not records:
            return
        text = json_lines(records) if self.json else "".join(map(human_record, records))
        stream = self.stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full standard error must not end a request


def json_lines(records: list[dict[str, Any]]) -> str:
    """Flat records (no value an object) whose first key is "ts", one JSON object a line.

    One encoder call for all of them, then each `},{"ts":` made a line break.  Safe: in
    encoded text a `"` inside a string is always escaped, so `{"ts":` with a bare quote
    before `ts` opens an object, and with flat records only a record opens one."""
    try:
        encoded = orjson.dumps(records)[1:-1]
    except orjson.JSONEncodeError:  # a string with a lone surrogate: shown replaced, not lost
        encoded = orjson.dumps([_valid(record) for record in records])[1:-1]
    return encoded.replace(b'},{"ts":', b'}\n{"ts":').decode() + "\n"


def _valid(record: dict[str, Any]) -> dict[str, Any]:
    return {key: _valid_value(value) for key, value in record.items()}


def _valid_value(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_valid_value(item) for item in value]
    return value


def human_record(record: dict[str, Any]) -> str:
    """A record as `ts kind key=value ...`, leaving out what is unknown (None)."""
    try:
        return _human(record)
    except orjson.JSONEncodeError:  # a string with a lone surrogate: shown replaced
        return _human(_valid(record))


def _human(record: dict[str, Any]) -> str:
    items = iter(record.items())
    words = [next(items)[1], next(items)[1]]  # the time and the kind, shown bare
    words += [f"{key}={_word(value)}" for key, value in items if value is not None]
    return " ".join(words) + "\n"


# The last second formatted (its date and time of day) and the last millisecond (the whole
# stamp): lines written together mostly share their millisecond, and all their second.
_second: list[Any] = [-1, ""]
_millisecond: list[Any] = [-1, ""]


def _stamp() -> str:
    """The present time to the millisecond."""
    millisecond = int(time.time() * 1000)
    if millisecond != _millisecond[0]:
        second, fraction = divmod(millisecond, 1000)
        if second != _second[0]:
            moment = datetime.fromtimestamp(second, UTC)
            _second[:] = [second, moment.strftime("%Y-%m-%dT%H:%M:%S.")]
        _millisecond[:] = [millisecond, f"{_second[1]}{fraction:03d}Z"]
    text: str = _millisecond[1]
    return text


def json_line(kind: str, fields: dict[str, Any]) -> str:
    """`fields` (whose first two keys are "ts" and "kind", to be filled) as one JSON line."""
    fields["ts"], fields["kind"] = _stamp(), kind
    return orjson.dumps(fields).decode() + "\n"


def _word(value: Any) -> str:
    """A value bare when it reads as one word, else quoted with JSON's escapes: a client's
    path or method holding a line break, a tab or a terminal escape must not start a line of
    its own, or rewrite the terminal of whoever reads the log."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if text and text.isprintable() and " " not in text and '"' not in text and "=" not in text:
        return text
    return orjson.dumps(text).decode()


def printable(text: str) -> str:
    """`text` with what does not print (line breaks, terminal escapes) written as escapes,
    for a line of the human-readable log."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class TextFormatter(logging.Formatter):
    """The server's own log records for people: a message (which may quote what a client or a
    remote server sent) on one line, whatever it holds; a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """The server's own log records (warnings, errors) as JSON lines, beside the access lines."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json_line("log", {"ts": None, "kind": None, **fields}).rstrip("\n")


# --- metrics and lines together ---------------------------------------------------------------


class Operations:
    """Counts and writes what each request and tool call did, when asked to: `metrics` keeps
    the Prometheus series, `lines` writes access and audit lines (None: neither)."""

    def __init__(
        self,
        metrics: bool = False,
        lines: LineWriter | None = None,
        methods: frozenset[str] = frozenset(),
    ) -> None:
        self.lines = lines
        self.methods = methods
        self.registry: Registry | None = Registry() if metrics else None
        self.enabled = metrics or lines is not None
        self.sessions_open: Callable[[], float] = lambda: 0.0
        self.streams_open: Callable[[], float] = lambda: 0.0
        if self.registry is not None:
            self._series(self.registry)

    def _series(self, registry: Registry) -> None:
        self.requests = Timings(("method", "era", "status"))
        self.tool_calls = Timings(("tool", "outcome"))
        self.refusals = Counter(
            "mcp_rate_limit_refusals_total",
            "Requests refused with 429 (rate limit, or calls in flight at the token's cap).",
        )
        self.backend_seconds = Histogram(
            "mcp_backend_duration_seconds",
            "Time of each operation on a backend (store, redis).",
            ("backend",),
        )
        self.backend_errors = Counter(
            "mcp_backend_errors_total", "Failed operations on a backend.", ("backend",)
        )
        for metric in (
            self.requests.counts(
                "mcp_requests_total",
                "Requests answered, by MCP method (or HTTP method), era and HTTP status.",
            ),
            self.requests.histogram(
                "mcp_request_duration_seconds", "Time to answer a request, by MCP method.", 1
            ),
            self.tool_calls.counts("mcp_tool_calls_total", "Tool calls, by tool and outcome."),
            self.tool_calls.histogram(
                "mcp_tool_call_duration_seconds", "Time a tool call ran, by tool.", 1
            ),
            Gauge(
                "mcp_sessions_open", "Handshake-era sessions this process serves.", self._sessions
            ),
            Gauge("mcp_sse_streams_open", "SSE responses open now.", self._streams),
            self.refusals,
            self.backend_seconds,
            self.backend_errors,
        ):
            registry.add(metric)

    def _sessions(self) -> float:
        return self.sessions_open()

    def _streams(self) -> float:
        return self.streams_open()

    def begin(self, channel: object) -> RequestFacts | None:
        """The facts of a request on `channel`; its id (for the lines) is read only when
        lines are written."""
        if not self.enabled:
            return None
        named = self.lines is not None
        return request_facts(
            time.perf_counter(), getattr(channel, "request_id", "-") if named else "-"
        )

    def completed(self, http_method: str, path: str, facts: Any, status: int) -> None:
        """A request answered (its whole response written, or its stream ended)."""
        if not isinstance(facts, dict):
            return
        seconds = time.perf_counter() - facts["duration_ms"]
        if self.registry is not None:
            method = facts["method"]
            if method not in self.methods:  # not MCP: counted by its HTTP method, if a known one
                method = http_method if http_method in HTTP_METHODS else "other"
            self.requests.observe(seconds, (method, facts["era"], status))
            if status == 429:
                self.refusals.inc()
        if self.lines is not None:
            facts["ts"], facts["http"], facts["path"] = _stamp(), http_method, path
            facts["status"], facts["duration_ms"] = status, _milliseconds(seconds)
            self.lines.add(facts)

    def tool_ran(
        self,
        ctx: CallContext,
        tool: Tool,
        arguments: dict[str, Any],
        outcome: ToolResult | None,
        started: float,
    ) -> None:
        """A tool call ended (the engine's observer, called once a call): counted, and its
        audit line written."""
        seconds = time.perf_counter() - started
        word = verdict(outcome)
        facts, name, tenant = ctx.facts, tool.name, ctx.tenant_id
        if facts is not None:
            facts["tool"], facts["outcome"], facts["tenant"] = name, word, tenant
            if self.lines is not None:
                self.lines.add(_audit(facts, name, arguments, word, tenant, seconds))
        if self.registry is not None:
            self.tool_calls.observe(seconds, (name, word))

    def backend(self, name: str, seconds: float, ok: bool) -> None:
        if self.registry is not None:
            self.backend_seconds.observe(seconds, name)
            if not ok:
                self.backend_errors.inc(name)


# --- the audit line of a tool call -------------------------------------------------------------


def _audit(
    facts: RequestFacts,
    tool: str,
    arguments: dict[str, Any],
    outcome: str,
    tenant: str | None,
    seconds: float,
) -> dict[str, Any]:
    """A tool call's audit record: its argument names, never their values."""
    return {
        "ts": _stamp(),
        "kind": "audit",
        "request": facts["request"],
        "tool": tool,
        "arguments": sorted(arguments) if arguments else [],
        "token_id": facts["token_id"],
        "token_name": facts["token_name"],
        "tenant": tenant,
        "session": facts["session"],
        "outcome": outcome,
        "duration_ms": _milliseconds(seconds),
    }


def _milliseconds(seconds: float) -> float:
    """To the microsecond: `round` costs several times this."""
    return int(seconds * 1e6) / 1000
