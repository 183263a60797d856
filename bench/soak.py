"""`python -m bench.soak [--seconds N] [--clients N]`: a bounded soak of one product server.

One `spky mcp serve` process on a loopback port and a temporary data directory; `--clients`
concurrent clients (default 32) of both eras, each with its own mcp:full token, for a fixed
time (default 60 s), mixing:

- stateless (2026-07-28) reads (list_projects, get_logs, list_env_vars) and writes
  (set_env_var, deploy with a progress token, answered as an SSE stream);
- handshake-era sessions: initialize, initialized, calls (a deploy's SSE stream among them),
  sometimes the standalone GET stream held open a while, then DELETE;
- abrupt disconnects: a request cut off inside its headers or its body, a connection closed
  before a word, a stateless deploy's SSE reply abandoned after its first bytes (which
  cancels its handler).

Each client paces itself below the per-token rate limit (Limits.rate_per_minute, 1,200 a
minute) and makes one call at a time (Limits.max_calls_per_token is 32), so a 429 is an error
like any other.  An error is any response other than the one the request was built to get: a
5xx, a -32603, a JSON-RPC error or isError result from a call that should succeed, a status no
request provoked on purpose (the one provoked: a ping on a deleted session, which must get
404), a dropped connection, a timeout, and any error line or traceback in the server's
stderr.  Before the run (after a warm-up of the same load) and after it (once every client has
gone), the server's RSS and open file descriptors are read from /proc; they must come back
within the tolerances below.

Prints the figures and exits 1 when there was an error or memory or descriptors did not come
back, 0 otherwise.  Loopback only; every loop ends at its deadline; the server is stopped with
SIGTERM and must exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx

from sp00ky_mcp.product.accounts import Accounts
from sp00ky_mcp.product.store import open_store

ROOT = Path(__file__).resolve().parent.parent
ACCEPT = "application/json, text/event-stream"
SSE_FIRST = "text/event-stream, application/json"
HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
USER = "soak@localhost"
PROJECT = "api"
SERVER_ERROR = re.compile(r"^(ERROR|CRITICAL) |Traceback")
# Below the per-token refill rate (20 a second), so that no client is ever throttled.
REQUESTS_PER_SECOND = 15.0
REQUEST_TIMEOUT = 15.0
WARM_UP_SECONDS = 5.0
SETTLE_SECONDS = 15.0
# What "back to baseline" means, measured once every client has disconnected: descriptors
# within a few of the baseline (the store's WAL and shared-memory files may be reopened), and
# RSS within 32 MiB or a third of the baseline, whichever is larger (CPython keeps freed
# arenas; a leak of sessions, streams or tasks at this load grows far past that).
FD_SLACK = 4
RSS_SLACK_MIB = 32.0
RSS_SLACK_RATIO = 1 / 3


@dataclass
class Tally:
    """What the clients saw.  `errors` holds one line per error (the first few are printed)."""

    served: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    disconnects: int = 0

    def error(self, what: str) -> None:
        self.errors.append(what)

    def ok(self, kind: str, started: float) -> None:
        self.served[kind] += 1
        self.latencies.setdefault(kind, []).append(time.perf_counter() - started)

    def all_latencies(self) -> list[float]:
        return [value for values in self.latencies.values() for value in values]


# --- the server process -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_figures(pid: int) -> tuple[float, int]:
    """RSS in MiB and the number of open file descriptors of a process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def mint_tokens(data_dir: str, count: int, database_url: str | None = None) -> list[str]:
    return asyncio.run(_mint_tokens(data_dir, count, database_url))


async def _mint_tokens(data_dir: str, count: int, database_url: str | None) -> list[str]:
    store = await open_store(data_dir, url=database_url)
    try:
        accounts = Accounts(store)
        user = await accounts.ensure_user(USER)
        return [(await accounts.mint(user, f"soak-{i}", ("mcp:full",), 1))[1] for i in range(count)]
    finally:
        await store.close()


class Server:
    def __init__(self, data_dir: str, database_url: str | None = None) -> None:
        self.stderr = Path(data_dir) / "server.stderr"
        command = [
            sys.executable,
            "-m",
            "sp00ky_mcp",
            "mcp",
            "serve",
            "--port",
            "0",
            "--data-dir",
            data_dir,
            "--user",
            USER,
            "--log-level",
            "warning",
            *(["--database-url", database_url] if database_url else []),
        ]
        with self.stderr.open("wb") as errors:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=ROOT
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1/mcp)$", line.strip())
        if not match:
            self.process.kill()
            raise SystemExit(f"the server did not start: {line!r}")
        self.url = match.group(1)
        self.port = int(self.url.split(":")[2].split("/")[0])

    def figures(self) -> tuple[float, int]:
        return proc_figures(self.process.pid)

    def stop(self) -> int:
        """SIGTERM; the exit status (or -9 when it had to be killed)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            status = -9
        if self.process.stdout is not None:
            self.process.stdout.close()
        return status

    def tracebacks(self) -> list[str]:
        """The server's own error lines (its log format is "LEVEL logger: message")."""
        text = self.stderr.read_text(errors="replace")
        return [line for line in text.splitlines() if SERVER_ERROR.search(line)]


# --- one client ------------------------------------------------------------------------------


class Client:
    """One MCP client with its own token and connection pool, paced below the rate limit."""

    def __init__(self, server: Server, token: str, seed: int, tally: Tally) -> None:
        self.server = server
        self.url = server.url
        self.token = token
        self.random = random.Random(seed)
        self.tally = tally
        self.http = httpx.AsyncClient(timeout=REQUEST_TIMEOUT)
        self.next_slot = time.monotonic()
        self.number = seed

    async def pace(self) -> None:
        """Token-bucket pacing on the client side: one request per 1/REQUESTS_PER_SECOND."""
        now = time.monotonic()
        self.next_slot = max(self.next_slot, now) + 1 / REQUESTS_PER_SECOND
        await anyio.sleep(max(0.0, self.next_slot - now - 1 / REQUESTS_PER_SECOND))

    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}", "content-type": "application/json"}

    async def run(self, deadline: float) -> None:
        try:
            while time.monotonic() < deadline:
                action = self.random.choices(ACTIONS, WEIGHTS)[0]
                await action(self)
        finally:
            await self.http.aclose()

    # --- exchanges ---

    async def exchange(
        self, kind: str, method: str, headers: dict[str, str], body: Any, expect: int
    ) -> httpx.Response | None:
        """One request; checks the status and, for JSON-RPC, that no error came back."""
        await self.pace()
        started = time.perf_counter()
        content = json.dumps(body).encode() if body is not None else None
        try:
            response = await self.http.request(method, self.url, headers=headers, content=content)
        except httpx.HTTPError as exc:
            self.tally.error(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        if response.status_code != expect:
            self.tally.error(f"{kind}: HTTP {response.status_code}: {response.text[:200]!r}")
            return None
        problem = rpc_problem(response) if body is not None and expect == 200 else None
        if problem is not None:
            self.tally.error(f"{kind}: {problem}")
            return None
        self.tally.ok(kind, started)
        return response

    def stateless(self, method: str, name: str | None, accept: str = ACCEPT) -> dict[str, str]:
        headers = {**self.auth(), "accept": accept, "mcp-protocol-version": MODERN}
        headers["mcp-method"] = method
        if name is not None:
            headers["mcp-name"] = name
        return headers

    async def stateless_call(self, tool: str, arguments: dict[str, Any], progress: bool) -> None:
        meta: dict[str, Any] = dict(MODERN_META)
        if progress:
            meta["progressToken"] = f"p-{self.number}"
        body = call_body(1, tool, arguments, meta)
        await self.exchange(
            f"stateless {tool}", "POST", self.stateless("tools/call", tool), body, 200
        )

    # --- the actions, chosen at random by weight ---

    async def read(self) -> None:
        reads: list[tuple[str, dict[str, Any]]] = [
            ("list_projects", {}),
            ("get_logs", {"project": PROJECT, "lines": 50}),
            ("list_env_vars", {"project": PROJECT}),
        ]
        tool, arguments = self.random.choice(reads)
        await self.stateless_call(tool, arguments, progress=False)

    async def write(self) -> None:
        if self.random.random() < 0.7:
            key = f"SOAK_{self.number}_{self.random.randrange(8)}"
            value = f"value-{self.random.randrange(10**6)}"
            arguments = {"project": PROJECT, "key": key, "value": value}
            await self.stateless_call("set_env_var", arguments, progress=False)
        else:
            await self.stateless_call("deploy", {"project": PROJECT}, progress=True)

    async def session(self) -> None:
        """A handshake-era session from initialize to DELETE."""
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": HANDSHAKE,
                "capabilities": {},
                "clientInfo": {"name": "soak", "version": "1"},
            },
        }
        reply = await self.exchange(
            "session initialize", "POST", {**self.auth(), "accept": ACCEPT}, init, 200
        )
        if reply is None:
            return
        session_id = reply.headers["mcp-session-id"]
        headers = {
            **self.auth(),
            "accept": ACCEPT,
            "mcp-session-id": session_id,
            "mcp-protocol-version": HANDSHAKE,
        }
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await self.exchange("session initialized", "POST", headers, initialized, 202)
        async with anyio.create_task_group() as tasks:
            if self.random.random() < 0.3:
                tasks.start_soon(self.standalone_stream, headers)
            for number in range(1, self.random.randint(2, 6)):
                calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
                    ("list_projects", {}, {}),
                    ("list_env_vars", {"project": PROJECT}, {}),
                    ("get_logs", {"project": PROJECT, "lines": 20}, {}),
                    ("deploy", {"project": PROJECT}, {"progressToken": number}),
                ]
                tool, arguments, meta = self.random.choice(calls)
                body = call_body(number, tool, arguments, meta)
                await self.exchange(f"session {tool}", "POST", headers, body, 200)
        await self.exchange("session DELETE", "DELETE", headers, None, 200)
        # Provoked on purpose: the deleted session is gone (404), as it must be.
        await self.exchange("session ping after DELETE (404)", "POST", headers, PING, 404)

    async def standalone_stream(self, headers: dict[str, str]) -> None:
        """The session's GET stream: its priming event, then held open a while, then the
        client goes away without a word."""
        await self.pace()
        started = time.perf_counter()
        get = {**headers, "accept": "text/event-stream"}
        try:
            async with self.http.stream("GET", self.url, headers=get) as response:
                if response.status_code != 200:
                    self.tally.error(f"GET stream: HTTP {response.status_code}")
                    return
                async for chunk in response.aiter_bytes():
                    if b"data:" in chunk:
                        break
                self.tally.ok("session GET stream", started)
                await anyio.sleep(self.random.uniform(0.2, 2.0))
        except httpx.HTTPError as exc:
            self.tally.error(f"GET stream: {type(exc).__name__}: {exc}")

    async def disconnect(self) -> None:
        """A client that goes away mid-request; nothing is owed to it."""
        await self.pace()
        way = self.random.choice(["in headers", "in body", "before a word", "mid stream"])
        body = json.dumps(
            call_body(1, "deploy", {"project": PROJECT}, {**MODERN_META, "progressToken": 1})
        ).encode()
        headers = {**self.stateless("tools/call", "deploy", SSE_FIRST)}
        head = (
            f"POST /v1/mcp HTTP/1.1\r\nhost: 127.0.0.1:{self.server.port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            stream = await anyio.connect_tcp("127.0.0.1", self.server.port)
        except OSError as exc:
            self.tally.error(f"disconnect: cannot connect: {exc}")
            return
        async with stream:
            if way == "in headers":
                await stream.send(head[: len(head) // 2])
            elif way == "in body":
                await stream.send(head + body[: len(body) // 2])
            elif way == "mid stream":
                await stream.send(head + body)
                try:
                    with anyio.fail_after(REQUEST_TIMEOUT):
                        await stream.receive()
                except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    self.tally.error("disconnect mid stream: no reply began")
                    return
        self.tally.disconnects += 1


PING = {"jsonrpc": "2.0", "id": "ping", "method": "ping"}
ACTIONS = [Client.read, Client.write, Client.session, Client.disconnect]
WEIGHTS = [50, 25, 15, 10]


def call_body(
    request_id: int, tool: str, arguments: dict[str, Any], meta: dict[str, Any]
) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if meta:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def rpc_problem(response: httpx.Response) -> str | None:
    """What is wrong with a JSON-RPC answer (JSON or SSE) to a call that should succeed."""
    kind = response.headers.get("content-type", "")
    if kind.startswith("text/event-stream"):
        messages = [
            json.loads(line[6:])
            for line in response.text.split("\n")
            if line.startswith("data: ") and line != "data: "
        ]
    elif kind.startswith("application/json"):
        messages = [response.json()]
    else:
        return f"unexpected content type {kind!r}"
    replies = [m for m in messages if "method" not in m]
    if len(replies) != 1:
        return f"{len(replies)} replies in {response.text[:200]!r}"
    [reply] = replies
    if "error" in reply:
        return f"JSON-RPC error {reply['error']}"
    result = reply["result"]
    if result.get("isError"):
        return f"isError result {result['content'][0]['text']!r}"
    return None


# --- the run ---------------------------------------------------------------------------------


async def load(server: Server, tokens: list[str], seconds: float, tally: Tally) -> None:
    deadline = time.monotonic() + seconds
    async with anyio.create_task_group() as tasks:
        for number, token in enumerate(tokens):
            tasks.start_soon(Client(server, token, number, tally).run, deadline)


async def prepare(server: Server, token: str) -> None:
    meta = MODERN_META
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "accept": ACCEPT,
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": "create_project",
    }
    body = call_body(1, "create_project", {"name": PROJECT, "services": ["web", "api"]}, meta)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
        reply = await http.post(server.url, json=body, headers=headers)
    if reply.status_code != 200 or reply.json()["result"]["isError"]:
        raise SystemExit(f"could not create the project: {reply.text}")


def settle(server: Server, fds: int) -> tuple[float, int]:
    """The figures once the server has closed what the clients left: polled until the
    descriptors are back within the slack, or for at most SETTLE_SECONDS."""
    until = time.monotonic() + SETTLE_SECONDS
    rss, now = server.figures()
    while now > fds + FD_SLACK and time.monotonic() < until:
        time.sleep(0.2)
        rss, now = server.figures()
    return rss, now


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--database-url", help="serve on this PostgreSQL database (emptied)")
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    load_average = Path("/proc/loadavg").read_text().split()[0]
    with tempfile.TemporaryDirectory(prefix="sp00ky-soak-") as data_dir:
        tokens = mint_tokens(data_dir, args.clients, args.database_url)
        server = Server(data_dir, args.database_url)
        try:
            idle_fds = server.figures()[1]
            anyio.run(prepare, server, tokens[0])
            warm = Tally()
            anyio.run(load, server, tokens, WARM_UP_SECONDS, warm)
            # The baseline: after the warm-up, once its clients have gone.
            rss0, fds0 = settle(server, idle_fds)
            tally = Tally()
            peak = [rss0]
            began, cpu0 = time.perf_counter(), cpu_seconds(server.process.pid)
            anyio.run(watched_load, server, tokens, args.seconds, tally, peak)
            elapsed = time.perf_counter() - began
            cpu = cpu_seconds(server.process.pid) - cpu0
            rss1, fds1 = settle(server, fds0)
            tracebacks = server.tracebacks()
        finally:
            status = server.stop()
    errors = warm.errors + tally.errors + tracebacks
    if status != 0:
        errors.append(f"the server exited {status} on SIGTERM")
    rss_limit = rss0 + max(RSS_SLACK_MIB, rss0 * RSS_SLACK_RATIO)
    memory_ok = rss1 <= rss_limit
    fds_ok = fds1 <= fds0 + FD_SLACK
    served = sum(tally.served.values())
    latencies = tally.all_latencies()
    lines = [
        f"sp00ky-mcp soak, {started_at:%Y-%m-%d %H:%M} UTC: {args.seconds:.0f} s, "
        f"{args.clients} clients of both eras, one product server (Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load_average} "
        "at the start)",
        f"requests served: {served} ({served / elapsed:.0f}/s); abrupt disconnects: "
        f"{tally.disconnects}",
        *(
            f"  {kind}: {count} (p99 {percentile(tally.latencies[kind], 0.99) * 1000:.1f} ms)"
            for kind, count in sorted(tally.served.items())
        ),
        f"errors: {len(errors)}",
        *(f"  {error}" for error in errors[:10]),
        f"latency: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
        f"max {max(latencies, default=0) * 1000:.1f} ms",
        f"server CPU: {cpu:.1f} s in {elapsed:.1f} s ({cpu / elapsed:.0%} of one core)",
        f"server RSS: {rss0:.1f} MiB after warm-up, peak {peak[0]:.1f} MiB, {rss1:.1f} MiB at "
        f"the end (limit {rss_limit:.1f} MiB): {'ok' if memory_ok else 'NOT BACK'}",
        f"server fds: {fds0} after warm-up, {fds1} at the end (limit {fds0 + FD_SLACK}): "
        f"{'ok' if fds_ok else 'NOT BACK'}",
        f"server exit on SIGTERM: {status}",
    ]
    print("\n".join(lines), flush=True)
    return 0 if not errors and memory_ok and fds_ok else 1


async def watched_load(
    server: Server, tokens: list[str], seconds: float, tally: Tally, peak: list[float]
) -> None:
    """The load, with the server's RSS sampled every second for the peak."""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(sample_peak, server, seconds, peak)
        await load(server, tokens, seconds, tally)


async def sample_peak(server: Server, seconds: float, peak: list[float]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak[0] = max(peak[0], server.figures()[0])
        await anyio.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
