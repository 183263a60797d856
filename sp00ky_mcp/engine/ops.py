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
from typing import Any, TextIO

import anyio
import orjson

from .metrics import Counter, Gauge, Histogram, Registry, Timings

Check = Callable[[], Awaitable[object]]
# How long a readiness check may take, and how long its answer is reused: a load balancer
# probing every replica often costs the store one query per second at most.
CHECK_SECONDS = 2.0
READY_REUSE_SECONDS = 1.0
# How long access and audit lines may wait to be written, and how many may wait.
FLUSH_SECONDS = 0.1
FLUSH_LINES = 512


class RequestFacts:
    """What the server learns of a request as it answers it, for its access line."""

    __slots__ = (
        "era",
        "method",
        "outcome",
        "request",
        "session",
        "started",
        "tenant",
        "token_id",
        "token_name",
        "tool",
    )

    def __init__(self, started: float, request: str, era: str = "-", method: str = "-") -> None:
        self.started, self.request, self.era, self.method = started, request, era, method
        self.session: str | None = None
        self.tool: str | None = None
        self.token_id: str | None = None
        self.token_name: str | None = None
        self.tenant: str | None = None
        self.outcome: str | None = None


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
    """Lines gathered for up to `FLUSH_SECONDS` (or `FLUSH_LINES` lines) and written together:
    a write per request would cost a system call each, more than the rest of its line.

    A line is kept as its formatter and the values it shows, and formatted when written: one
    tight loop over many lines costs a request's hot path a fraction of formatting each
    line as it happens."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lines: list[tuple[Callable[..., str], tuple[Any, ...]]] = []

    def add(self, form: Callable[..., str], *values: Any) -> None:
        lines = self._lines
        lines.append((form, values))
        if len(lines) == 1:
            try:
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no loop: at once
                self.flush()
        elif len(lines) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if not lines:
            return
        text = "".join([form(*values) for form, values in lines])
        stream = self.stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full standard error must not end a request


# The last second formatted (its date and time of day) and the last millisecond (the whole
# stamp): lines written together mostly share their millisecond, and all their second.
_second: list[Any] = [-1, ""]
_millisecond: list[Any] = [-1, ""]


def _stamp(now: float | None = None) -> str:
    """The time (`now`, or the present) to the millisecond."""
    if now is None:
        now = time.time()
    millisecond = int(now * 1000)
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


def human_line(now: float, kind: str, fields: dict[str, Any]) -> str:
    words = [_stamp(now), kind]
    words += [f"{key}={_word(value)}" for key, value in fields.items() if value is not None]
    return " ".join(words) + "\n"


def _word(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if text and " " not in text and '"' not in text else orjson.dumps(text).decode()


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
        json: bool = False,
        methods: frozenset[str] = frozenset(),
    ) -> None:
        self.lines = lines
        self.access_line = _access_json if json else _access_human
        self.audit_line = _audit_json if json else _audit_human
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
        return RequestFacts(
            time.perf_counter(), getattr(channel, "request_id", "-") if named else "-"
        )

    def completed(self, http_method: str, path: str, facts: Any, status: int) -> None:
        """A request answered (its whole response written, or its stream ended)."""
        if not isinstance(facts, RequestFacts):
            return
        seconds = time.perf_counter() - facts.started
        if self.registry is not None:
            method = facts.method if facts.method in self.methods else http_method
            self.requests.observe(seconds, (method, facts.era, status))
            if status == 429:
                self.refusals.inc()
        if self.lines is not None:
            self.lines.add(self.access_line, time.time(), http_method, path, facts, status, seconds)

    def tool_called(
        self,
        facts: Any,
        tool: str,
        arguments: dict[str, Any],
        outcome: str,
        seconds: float,
        tenant: str | None,
    ) -> None:
        if isinstance(facts, RequestFacts):
            facts.tool, facts.outcome, facts.tenant = tool, outcome, tenant
            if self.lines is not None:
                names = tuple(arguments) if arguments else ()
                self.lines.add(
                    self.audit_line, time.time(), facts, tool, names, outcome, tenant, seconds
                )
        if self.registry is not None:
            self.tool_calls.observe(seconds, (tool, outcome))

    def backend(self, name: str, seconds: float, ok: bool) -> None:
        if self.registry is not None:
            self.backend_seconds.observe(seconds, name)
            if not ok:
                self.backend_errors.inc(name)


# --- the lines of a request and of a tool call -------------------------------------------------

# A JSON line from a template: the server's own values (request ids, eras, outcome words,
# numbers) go in as they are; anything a client or a user chose is encoded (`_json`).  A line
# then costs one string format, not a dict and an encoder pass over every field.
ACCESS_JSON = (
    '{"ts":"%s","kind":"access","request":"%s","http":%s,"path":%s,"method":%s,"era":"%s",'
    '"session":%s,"tool":%s,"token_id":%s,"token_name":%s,"tenant":%s,"status":%d,'
    '"outcome":%s,"duration_ms":%.3f}\n'
)
AUDIT_JSON = (
    '{"ts":"%s","kind":"audit","request":"%s","tool":%s,"arguments":%s,"token_id":%s,'
    '"token_name":%s,"tenant":%s,"session":%s,"outcome":"%s","duration_ms":%.3f}\n'
)
# Encoded values kept for reuse (a token's name, a path, a tool), up to this many of this size.
ENCODED_KEPT = 1024
ENCODED_LONGEST = 64


class _Encoded(dict[str | None, str]):
    """A value as JSON (`_json[value]`), from the values seen lately when it is one of them:
    a hit is one dictionary lookup, with no Python call, for each of a line's dozen fields."""

    def __missing__(self, value: str | None) -> str:
        text = orjson.dumps(value).decode()
        if value is None or len(value) <= ENCODED_LONGEST:
            if len(self) >= ENCODED_KEPT:
                self.clear()  # bounded whatever clients send; the usual ones come back
            self[value] = text
        return text


_json = _Encoded()


def _access_json(
    now: float, http_method: str, path: str, facts: RequestFacts, status: int, seconds: float
) -> str:
    return ACCESS_JSON % (
        _stamp(now),
        facts.request,
        _json[http_method],
        _json[path],
        _json[facts.method],
        facts.era,
        _json[facts.session],
        _json[facts.tool],
        _json[facts.token_id],
        _json[facts.token_name],
        _json[facts.tenant],
        status,
        _json[facts.outcome],
        seconds * 1000,
    )


def _audit_json(
    now: float,
    facts: RequestFacts,
    tool: str,
    names: tuple[str, ...],
    outcome: str,
    tenant: str | None,
    seconds: float,
) -> str:
    return AUDIT_JSON % (
        _stamp(now),
        facts.request,
        _json[tool],
        orjson.dumps(sorted(names)).decode() if names else "[]",
        _json[facts.token_id],
        _json[facts.token_name],
        _json[tenant],
        _json[facts.session],
        outcome,
        seconds * 1000,
    )


def _access_human(
    now: float, http_method: str, path: str, facts: RequestFacts, status: int, seconds: float
) -> str:
    return human_line(
        now,
        "access",
        {
            "request": facts.request,
            "http": http_method,
            "path": path,
            "method": facts.method,
            "era": facts.era,
            "session": facts.session,
            "tool": facts.tool,
            "token_id": facts.token_id,
            "token_name": facts.token_name,
            "tenant": facts.tenant,
            "status": status,
            "outcome": facts.outcome,
            "duration_ms": round(seconds * 1000, 3),
        },
    )


def _audit_human(
    now: float,
    facts: RequestFacts,
    tool: str,
    names: tuple[str, ...],
    outcome: str,
    tenant: str | None,
    seconds: float,
) -> str:
    return human_line(
        now,
        "audit",
        {
            "request": facts.request,
            "tool": tool,
            "arguments": sorted(names),
            "token_id": facts.token_id,
            "token_name": facts.token_name,
            "tenant": tenant,
            "session": facts.session,
            "outcome": outcome,
            "duration_ms": round(seconds * 1000, 3),
        },
    )
