"""Servers side by side under the same load: each pinned to core 0, wrk pinned to core 1,
rounds alternating A B A B ..., medians reported with their ratios."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests import redis_support
from tests.faults_support import children
from tests.pg_support import TRUNCATE_ALL, postgres_server_url, psql

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ACCEPT = "application/json, text/event-stream"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass
class Load:
    """One request, sent over and over on every connection; each connection adds its own
    headers (its session), as separate clients would."""

    body: dict[str, object]
    headers: dict[str, str]
    per_connection: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Target:
    name: str
    command: Callable[[int], list[str]]
    prepare: Callable[[str, int], Load]
    env: dict[str, str] = field(default_factory=dict)
    # The cores the server may run on (wrk runs on core 1).
    cores: str = "0"
    # Its standard error thrown away (a server writing a line per request), not shown.
    quiet: bool = False


@dataclass
class Sample:
    rps: float
    p99_ms: float
    cpu_us: float
    errors: int = 0


def call_body(
    name: str = "test_simple_text",
    meta: dict[str, object] | None = None,
    arguments: dict[str, object] | None = None,
) -> dict[str, object]:
    params: dict[str, object] = {"name": name, "arguments": arguments or {}}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}


def handshake(url: str, token: str | None = None) -> dict[str, str]:
    headers = {"accept": ACCEPT, "content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    reply = httpx.post(url, json=init, headers=headers, timeout=10)
    reply.raise_for_status()
    session = {
        **headers,
        "mcp-session-id": reply.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-11-25",
    }
    httpx.post(
        url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=session,
        timeout=10,
    )
    return session


def session_load(
    url: str, body: dict[str, object], connections: int, token: str | None = None
) -> Load:
    """One session per connection: a session's requests may be answered one at a time (the
    SDK does), so sessions shared between connections would measure a queue, not the server."""
    opened = [handshake(url, token) for _ in range(connections)]
    common = {k: v for k, v in opened[0].items() if k != "mcp-session-id"}
    return Load(body, common, [{"mcp-session-id": h["mcp-session-id"]} for h in opened])


def handshake_load(url: str, connections: int) -> Load:
    return session_load(url, call_body(), connections)


def sse_reply_load(url: str, connections: int) -> Load:
    """The same call, from a client that prefers an event stream: one SSE event."""
    load = handshake_load(url, connections)
    load.headers["accept"] = "text/event-stream, application/json"
    return load


def progress_load(url: str, connections: int) -> Load:
    """A call that reports progress three times before its result: four SSE events."""
    body = call_body("test_tool_with_progress", meta={"progressToken": "p"})
    return session_load(url, body, connections)


def modern_load(url: str, connections: int) -> Load:
    headers = {
        "accept": ACCEPT,
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "test_simple_text",
    }
    return Load(call_body(meta=MODERN_META), headers)


def ceiling_load(url: str, connections: int) -> Load:
    return Load(call_body(), {"accept": ACCEPT, "content-type": "application/json"})


def lua_script(load: Load) -> str:
    """wrk runs one thread per connection; setup() numbers the threads and init() adds that
    connection's own headers before wrk formats the request once."""
    body = orjson.dumps(load.body).decode()
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(body)}"]
    lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in load.headers.items()]
    lines.append("local own = {")
    lines += [f"  {{{lua_table(extra)}}}," for extra in load.per_connection]
    lines += [
        "}",
        "local threads = 0",
        "function setup(thread)",
        "  threads = threads + 1",
        '  thread:set("connection", threads)',
        "end",
        "function init(args)",
        "  for k, v in pairs(own[connection] or {}) do wrk.headers[k] = v end",
        "end",
    ]
    return "\n".join(lines) + "\n"


def lua_table(fields: dict[str, str]) -> str:
    return ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in fields.items())


def lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, seconds: float = 20.0) -> None:
    """Some servers announce themselves before they bind; wait until connections succeed."""
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def cpu_seconds(pid: int) -> float:
    """The CPU time of the process and of its children (a supervisor's workers)."""
    return _own_cpu(pid) + sum(_own_cpu(child) for child in children(pid))


def _own_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Running:
    def __init__(self, target: Target) -> None:
        self.port = free_port()
        env = {**os.environ, **target.env}
        self.process = subprocess.Popen(
            ["taskset", "-c", target.cores, *target.command(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if target.quiet else None,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"(http://\S+/v1/mcp)", line)
        if not match:
            raise RuntimeError(f"{target.name} did not start: {line!r}")
        self.url = match.group(1)
        self.pid = self.process.pid
        wait_for_port(self.port)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # uvicorn waits for open sessions before it exits; the measurement is over.
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()
        # Only once the server has stopped: calls still running when the load ends (queued
        # writes) would otherwise find their data directory and key file gone.
        shutil.rmtree(PRODUCT_DIR, ignore_errors=True)
        if "url" in DATABASE:
            psql(DATABASE["url"], TRUNCATE_ALL)


def wrk(url: str, script: str, seconds: float, connections: int) -> tuple[float, float, int, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            f"-t{connections}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            handle.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(handle.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p99_ms, total, int(errors.group(1)) if errors else 0


def measure(target: Target, seconds: float, connections: int) -> Sample:
    running = Running(target)
    try:
        load = target.prepare(running.url, connections)
        script = lua_script(load)
        wrk(running.url, script, 1.0, connections)
        before = cpu_seconds(running.pid)
        rps, p99, total, errors = wrk(running.url, script, seconds, connections)
        cpu = cpu_seconds(running.pid) - before
        return Sample(rps, p99, cpu / total * 1e6, errors)
    finally:
        running.stop()


def idle_memory(target: Target, sessions: int) -> tuple[float, float]:
    """RSS at rest (MiB) and per idle handshake-era session (KiB)."""
    running = Running(target)
    try:
        time.sleep(0.5)
        rest = rss_kib(running.pid)
        for _ in range(sessions):
            handshake(running.url)
        grown = rss_kib(running.pid)
        return rest / 1024, (grown - rest) / sessions
    finally:
        running.stop()


def ours(port: int) -> list[str]:
    return [
        PY,
        "-m",
        "sp00ky_mcp",
        "mcp",
        "serve",
        "--profile",
        "conformance",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def observed(port: int) -> list[str]:
    """Ours with metrics kept and an access and audit line per request, as JSON."""
    return [*ours(port)[:-2], "--log-level", "info", "--log-format", "json", "--metrics"]


PRODUCT_DIR = Path(tempfile.gettempdir()) / "sp00ky-bench-product"
# The PostgreSQL database of the runs on PostgreSQL (set by `run`, emptied after each target).
DATABASE: dict[str, str] = {}


# The Redis of the rows that share state on it (set by `run`), and the key file replicas share.
REDIS: dict[str, str] = {}
KEY_FILE = Path(tempfile.gettempdir()) / "sp00ky-bench-secret.key"


def shared_flags() -> list[str]:
    return ["--redis-url", REDIS["url"], "--secret-key-file", str(KEY_FILE)]


def on_redis(*extra: str) -> Callable[[int], list[str]]:
    return lambda port: [*ours(port), *shared_flags(), *extra]


def store_flags(backend: str) -> list[str]:
    flags = ["--data-dir", str(PRODUCT_DIR)]
    return flags if backend == "sqlite" else [*flags, "--database-url", DATABASE["url"]]


def product_on(backend: str) -> Callable[[int], list[str]]:
    return lambda port: product(port, backend)


def product(port: int, backend: str = "sqlite") -> list[str]:
    return [
        PY,
        "-m",
        "sp00ky_mcp",
        "mcp",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *store_flags(backend),
        # The load comes from one token; its rate limit is not what is measured.
        "--rate-per-minute",
        "1e9",
        "--rate-burst",
        "1000000000",
    ]


def mint(scopes: str, backend: str = "sqlite") -> str:
    out = subprocess.run(
        [
            PY,
            "-m",
            "sp00ky_mcp",
            "mcp",
            "token",
            *store_flags(backend),
            "--scopes",
            scopes,
            "--yes",
            "--json",
            "--name",
            # Token names are unique per user, and targets share a data directory.
            f"bench-{scopes}-{secrets.token_hex(4)}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"minting a token failed: {out.stderr.strip()}")
    token: str = orjson.loads(out.stdout)["token"]
    return token


def product_load(url: str, connections: int, backend: str = "sqlite") -> Load:
    """list_env_vars on a project with 50 variables, under an mcp:read token: the product
    path (auth, scope check, tenant lookup, redaction) against the fixture call."""
    writer = handshake(url, mint("mcp:full", backend))
    calls = [call_body("create_project", arguments={"name": "api"})] + [
        call_body(
            "set_env_var",
            arguments={"project": "api", "key": f"KEY_{i}", "value": f"value-{i}-secret"},
        )
        for i in range(50)
    ]
    for body in calls:
        httpx.post(url, json=body, headers=writer, timeout=10).raise_for_status()
    body = call_body("list_env_vars", arguments={"project": "api", "limit": 50})
    return session_load(url, body, connections, mint("mcp:read", backend))


def write_load(url: str, connections: int, backend: str = "sqlite") -> Load:
    """set_env_var, one durable write transaction a call (with its log line)."""
    writer = handshake(url, mint("mcp:full", backend))
    create = call_body("create_project", arguments={"name": "api"})
    httpx.post(url, json=create, headers=writer, timeout=10).raise_for_status()
    body = call_body("set_env_var", arguments={"project": "api", "key": "HOT", "value": "v"})
    return session_load(url, body, connections, mint("mcp:full", backend))


def on_postgres(load: Callable[[str, int, str], Load]) -> Callable[[str, int], Load]:
    return lambda url, connections: load(url, connections, "postgres")


TARGETS = {
    "sp00ky-mcp (handshake, JSON)": Target("sp00ky", ours, handshake_load),
    "sp00ky-mcp (2026-07-28)": Target("sp00ky-modern", ours, modern_load),
    "sp00ky-mcp (handshake, JSON, metrics and JSON access logs)": Target(
        "sp00ky-observed", observed, handshake_load, quiet=True
    ),
    "sp00ky-mcp (handshake, SSE reply)": Target("sp00ky-sse", ours, sse_reply_load),
    "sp00ky-mcp (handshake, progress over SSE)": Target("sp00ky-progress", ours, progress_load),
    "official SDK (JSON replies)": Target(
        "sdk-json",
        lambda p: [PY, "-m", "bench.servers.sdk_reference", str(p), "json"],
        handshake_load,
    ),
    "official SDK (default SSE)": Target(
        "sdk-sse",
        lambda p: [PY, "-m", "bench.servers.sdk_reference", str(p), "sse"],
        handshake_load,
    ),
    "official SDK (2026-07-28)": Target(
        "sdk-modern",
        lambda p: [PY, "-m", "bench.servers.sdk_reference", str(p), "json"],
        modern_load,
    ),
    "sp00ky-mcp product path (list_env_vars, 50 vars)": Target(
        "sp00ky-product", product, product_load
    ),
    "sp00ky-mcp product path on PostgreSQL (list_env_vars, 50 vars)": Target(
        "sp00ky-product-pg", product_on("postgres"), on_postgres(product_load)
    ),
    "sp00ky-mcp write path (set_env_var)": Target("sp00ky-write", product, write_load),
    "sp00ky-mcp write path on PostgreSQL (set_env_var)": Target(
        "sp00ky-write-pg", product_on("postgres"), on_postgres(write_load)
    ),
    "sp00ky-mcp (handshake, JSON, sessions on Redis)": Target(
        "sp00ky-redis", on_redis(), handshake_load
    ),
    "sp00ky-mcp (2026-07-28, calls in flight counted on Redis)": Target(
        "sp00ky-modern-redis", on_redis(), modern_load
    ),
    "sp00ky-mcp (2026-07-28, on Redis, 1 worker, cores 0-1)": Target(
        "sp00ky-w1", on_redis(), modern_load, cores="0,1"
    ),
    "sp00ky-mcp (2026-07-28, on Redis, --workers 2, cores 0-1)": Target(
        "sp00ky-w2", on_redis("--workers", "2"), modern_load, cores="0,1"
    ),
    "bare h11 ceiling": Target(
        "bare", lambda p: [PY, "-m", "bench.servers.bare_h11", str(p)], ceiling_load
    ),
    "sp00ky-mcp (handshake, JSON, uvloop)": Target(
        "sp00ky-uvloop", lambda p: [*ours(p), "--loop", "uvloop"], handshake_load
    ),
    "bare h11 ceiling (uvloop)": Target(
        "bare-uvloop",
        lambda p: [PY, "-m", "bench.servers.bare_h11", str(p), "uvloop"],
        ceiling_load,
    ),
}


# Latency without queueing: at 16 connections p99 mostly measures the queue in front of a
# saturated core, so each server's p99 is also taken with one connection (one request at once).
LATENCY_TARGETS = ("sp00ky-mcp (handshake, JSON)", "official SDK (JSON replies)")
ONE_CONNECTION = ", 1 connection"


def run(rounds: int = 3, seconds: float = 5.0, connections: int = 16) -> dict[str, Sample]:
    """Every target, `rounds` times in turn, on a throwaway PostgreSQL and a throwaway Redis
    for the rows on them."""
    servers = postgres_server_url.__wrapped__()  # type: ignore[attr-defined]
    DATABASE["url"] = next(servers)
    try:
        with throwaway_redis():
            return run_all(rounds, seconds, connections)
    finally:
        DATABASE.clear()
        for _ in servers:
            pass


@contextmanager
def throwaway_redis() -> Iterator[str]:
    directory = Path(tempfile.mkdtemp(prefix="sp00ky-bench-redis-"))
    port = redis_support.free_port()
    process = redis_support.start(directory, port)
    KEY_FILE.unlink(missing_ok=True)
    REDIS["url"] = redis_support.url_of(port)
    try:
        yield REDIS["url"]
    finally:
        REDIS.clear()
        redis_support.stop(process)
        shutil.rmtree(directory, ignore_errors=True)
        KEY_FILE.unlink(missing_ok=True)


def redis_session_bytes(sessions: int) -> float:
    """Bytes Redis holds per idle handshake-era session of a server that shares them: what
    `MEMORY USAGE` reports for every key (the server's own aside), over the sessions kept
    (anonymous ones are one owner's, so its cap evicts the oldest past 64)."""
    with throwaway_redis() as url:
        client = redis_support.client(url)
        running = Running(Target("sp00ky-redis", on_redis(), handshake_load))
        try:
            for _ in range(sessions):
                handshake(running.url)
            keys = [k for k in client.scan_iter("sp00ky:*") if b":replica:" not in k]
            held = sum(int(client.memory_usage(key) or 0) for key in keys)
            kept = sum(1 for key in keys if key.startswith(b"sp00ky:s:"))
        finally:
            running.stop()
            client.close()
    return held / max(1, kept)


def shared_quota_costs(calls: int = 2000) -> list[tuple[str, float]]:
    """Wall µs per decision of the shared quotas (a round trip to a local Redis each), beside
    the in-process ones."""
    return asyncio.run(_quota_costs(calls))


async def _quota_costs(calls: int) -> list[tuple[str, float]]:
    from sp00ky_mcp.engine.quotas import LocalQuotas
    from sp00ky_mcp.product.shared.quotas import RedisQuotas
    from sp00ky_mcp.product.shared.redis import SharedLink

    with throwaway_redis() as url:
        link = SharedLink(url)
        try:
            shared, local = RedisQuotas(link), LocalQuotas()
            rows = []
            for name, quotas in (("shared (Redis)", shared), ("in process", local)):
                rows.append(
                    (
                        f"rate limit decision, {name}",
                        await _timed(calls, quotas.throttle, "t", 0.0, 1e9, 1e9),
                    )
                )
                rows.append(
                    (f"call slot claim + release, {name}", await _timed_slot(calls, quotas))
                )
            # A slot no replica leases yet: one round trip to lease it.
            rows.append(("call slot claim needing a lease, shared (Redis)", await _fresh(shared)))
            return rows
        finally:
            await link.close()


async def _timed(calls: int, step: Callable[..., Awaitable[object]], *args: object) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        await step(*args)
    return (time.perf_counter() - began) / calls * 1e6


async def _timed_slot(calls: int, quotas: Any) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        await quotas.claim("t", 32)
        await quotas.release("t")
    return (time.perf_counter() - began) / calls * 1e6


async def _fresh(quotas: Any, calls: int = 2000) -> float:
    began = time.perf_counter()
    for index in range(calls):
        await quotas.claim(f"fresh-{index}", 32)
        await quotas.release(f"fresh-{index}")
    return (time.perf_counter() - began) / calls * 1e6


def run_all(rounds: int, seconds: float, connections: int) -> dict[str, Sample]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian) and run again.")
    plan = [(name, connections) for name in TARGETS]
    plan += [(name, 1) for name in LATENCY_TARGETS]
    samples: dict[str, list[Sample]] = {}
    for round_number in range(rounds):
        for name, width in plan:
            label = name if width == connections else name + ONE_CONNECTION
            sample = measure(TARGETS[name], seconds, width)
            samples.setdefault(label, []).append(sample)
            print(
                f"round {round_number + 1}: {label}: {sample.rps:,.0f} req/s, "
                f"p99 {sample.p99_ms:.2f} ms, {sample.cpu_us:.0f} µs CPU/request, "
                f"{sample.errors} error responses",
                flush=True,
            )
    return {name: median(values) for name, values in samples.items()}


def median(values: list[Sample]) -> Sample:
    return Sample(
        statistics.median(v.rps for v in values),
        statistics.median(v.p99_ms for v in values),
        statistics.median(v.cpu_us for v in values),
        sum(v.errors for v in values),
    )
