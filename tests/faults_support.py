"""Support for the limit and fault tests: what a server holds (tasks, file descriptors,
connections) and a way to wait until it is back where it started; tools that hold a request
in flight; and `spky mcp serve` run as a child process that a test can SIGKILL or SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from sp00ky_mcp.engine.catalogue import Catalogue, Tool
from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.product.store import open_store
from sp00ky_mcp.product.store.sqlite import SqliteStore
from tests.wire import READ_BOUND, Gate

PYTHON_M = (sys.executable, "-m", "sp00ky_mcp", "mcp")
# A child process gets this long to start, to answer, or to exit when told to.
PROCESS_BOUND = 15.0
LISTENING = re.compile(r"listening on (http://\S+/v1/mcp)$")
MODERN = "2026-07-28"


# --- what a server holds --------------------------------------------------------------------


def fd_count() -> int:
    """Open file descriptors of this process: client and server sockets alike."""
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    return len(anyio.get_running_tasks())


async def settled(measure: Callable[[], int], target: int, bound: float = READ_BOUND) -> int:
    """Polls `measure` until it is down to `target`, within `bound` seconds; returns the last
    reading, so that a test asserts on the figure (and a failure shows it)."""
    with anyio.move_on_after(bound):
        while True:
            if measure() <= target:
                break
            await anyio.sleep(0.01)
    return measure()


@dataclass(frozen=True, slots=True)
class Footprint:
    tasks: int
    fds: int
    connections: int


async def footprint(server: McpServer) -> Footprint:
    """What the server holds once every connection a test closed is closed on its side too."""
    await settled(lambda: server.http.open_connections, 0)
    await anyio.wait_all_tasks_blocked()
    return Footprint(task_count(), fd_count(), server.http.open_connections)


async def back_to(server: McpServer, baseline: Footprint) -> Footprint:
    """The footprint once it has settled back to `baseline` (or the bound ran out)."""
    connections = await settled(lambda: server.http.open_connections, baseline.connections)
    tasks = await settled(task_count, baseline.tasks)
    fds = await settled(fd_count, baseline.fds)
    return Footprint(tasks, fds, connections)


# --- tools that hold a request in flight ---------------------------------------------------


class StreamingGate(Gate):
    """A `Gate` that reports progress before it blocks, so that its reply is already an SSE
    stream (with an event the client has read) when the client goes away."""

    async def handler(self, args: dict[str, Any], ctx: Any) -> str:
        await ctx.progress(1, 2, "half way")
        return await super().handler(args, ctx)

    def catalogue(self) -> Catalogue:
        schema = {"type": "object", "properties": {}}
        description = "Reports progress, then blocks until the test releases it"
        return Catalogue([Tool("held", description, schema, self.handler)])


# --- `spky mcp serve` as a child process ---------------------------------------------------


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def store_flags(data_dir: Path, database_url: str | None) -> list[str]:
    """The flags that put a command on the embedded store in `data_dir`, or on PostgreSQL at
    `database_url` (with its secret key file in `data_dir`)."""
    flags = ["--data-dir", str(data_dir)]
    return flags if database_url is None else [*flags, "--database-url", database_url]


def mint_token(data_dir: Path, scopes: str = "mcp:full", database_url: str | None = None) -> str:
    """`spky mcp token --json`, as a script mints one."""
    flags = store_flags(data_dir, database_url)
    done = subprocess.run(
        [*PYTHON_M, "token", *flags, "--scopes", scopes, "--yes", "--json"],
        capture_output=True,
        text=True,
        timeout=PROCESS_BOUND,
        check=True,
    )
    token: str = json.loads(done.stdout)["token"]
    return token


class Served:
    """A `spky mcp serve` process.  Its output is read by threads into queues, so that a test
    can wait for a line within a bound and the pipes never fill up."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stderr_queue: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=_pump, args=(self.process.stdout, self.stdout.put)),
            threading.Thread(target=_pump, args=(self.process.stderr, self._keep_stderr)),
        ]
        for reader in self._readers:
            reader.start()
        self.url = ""

    def _keep_stderr(self, line: str | None) -> None:
        if line is not None:
            self.stderr_lines.append(line)
        self.stderr_queue.put(line)

    def line(self, pattern: re.Pattern[str]) -> re.Match[str]:
        """The next stdout line that matches, within the process bound."""
        return self._next(self.stdout, pattern)

    def error_line(self, pattern: re.Pattern[str]) -> re.Match[str]:
        """The next stderr line that matches, within the process bound."""
        return self._next(self.stderr_queue, pattern)

    def _next(self, lines: queue.Queue[str | None], pattern: re.Pattern[str]) -> re.Match[str]:
        deadline = time.monotonic() + PROCESS_BOUND
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if match := pattern.search(line.rstrip("\n")):
                return match
        raise AssertionError(f"no line matching {pattern.pattern!r}; stderr: {self.stderr}")

    def listening(self) -> str:
        self.url = self.line(LISTENING).group(1)
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def wait(self, bound: float = PROCESS_BOUND) -> int:
        status = self.process.wait(timeout=bound)
        for reader in self._readers:
            reader.join(timeout=bound)
        return status

    def signal(self, number: signal.Signals) -> None:
        self.process.send_signal(number)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def _pump(pipe: Any, put: Callable[[str | None], None]) -> None:
    for line in pipe:
        put(line)
    put(None)


def serve_argv(
    data_dir: Path | None,
    prefix: tuple[str, ...] = (),
    database_url: str | None = None,
    options: tuple[str, ...] = ("--log-level", "warning"),
) -> list[str]:
    """`spky mcp serve` on a free port: the product on `data_dir` (or on PostgreSQL at
    `database_url`), or with no data directory whatever `options` ask for."""
    where = [] if data_dir is None else store_flags(data_dir, database_url)
    return [*prefix, *PYTHON_M, "serve", *where, "--port", "0", *options]


@contextmanager
def served(
    data_dir: Path | None,
    database_url: str | None = None,
    options: tuple[str, ...] = ("--log-level", "warning"),
) -> Iterator[Served]:
    """`spky mcp serve` as a child process, listening; killed if the test leaves it running."""
    server = Served(serve_argv(data_dir, database_url=database_url, options=options))
    try:
        server.listening()
        yield server
    finally:
        server.close()


def run_to_exit(argv: list[str]) -> tuple[int, str, str]:
    """A command that must exit by itself: its status, stdout and stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PROCESS_BOUND)
    return done.returncode, done.stdout, done.stderr


def read_only_prefix(path: Path) -> tuple[str, ...] | None:
    """A command prefix that runs the rest with `path` mounted read-only in a private mount
    namespace (root ignores permission bits, not a read-only mount); None where that cannot
    be done here."""
    if shutil.which("unshare") is None:
        return None
    prefix = (
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind -o ro "$0" "$0" && exec "$@"',
        str(path),
    )
    # access(2) reports a read-only mount as not writable, even to root.
    probe = subprocess.run(
        [*prefix, "test", "!", "-w", str(path)],
        capture_output=True,
        text=True,
        timeout=PROCESS_BOUND,
    )
    if probe.returncode != 0:
        return None
    return prefix


# --- stateless JSON-RPC over HTTP, for clients in threads ----------------------------------


def call_body(request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": tool, "arguments": arguments, "_meta": meta}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def call_headers(token: str, tool: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }


def call_tool(
    client: httpx.Client, url: str, token: str, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """One stateless tools/call; the JSON-RPC response object."""
    reply = client.post(url, json=call_body(1, tool, arguments), headers=call_headers(token, tool))
    payload: dict[str, Any] = reply.json()
    return payload


def succeeded(payload: dict[str, Any]) -> bool:
    result = payload.get("result")
    return isinstance(result, dict) and result.get("isError") is False


def write_value(key: str) -> str:
    """The value a burst writes under `key`: long enough to span more than one page write."""
    return f"{key}=" + "v" * 3000


# --- SIGKILL in a burst of writes ------------------------------------------------------------


class Burst:
    """Writers in threads, each setting its own keys one call after another, until stopped or
    the server goes away.  Records which writes were acknowledged with a success result."""

    def __init__(self, url: str, token: str, writers: int = 4) -> None:
        self.url = url
        self.token = token
        self.attempted: list[str] = []
        self.acknowledged: list[str] = []
        self.refused: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(n,)) for n in range(writers)]

    def __enter__(self) -> Burst:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=PROCESS_BOUND)

    def _write(self, writer: int) -> None:
        with httpx.Client(timeout=PROCESS_BOUND) as client:
            for n in range(10_000):
                if self.stop.is_set():
                    return
                key = f"K{writer}_{n}"
                self.attempted.append(key)
                arguments = {"project": "api", "key": key, "value": write_value(key)}
                try:
                    payload = call_tool(client, self.url, self.token, "set_env_var", arguments)
                except (httpx.HTTPError, json.JSONDecodeError):
                    return
                if succeeded(payload):
                    self.acknowledged.append(key)
                else:
                    self.refused.append(payload)

    def until_acknowledged(self, count: int) -> None:
        deadline = time.monotonic() + PROCESS_BOUND
        while len(self.acknowledged) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acknowledged) >= count, (self.acknowledged, self.refused)


def stored_variables(
    data_dir: Path, database_url: str | None = None
) -> tuple[str, dict[str, str], list[str]]:
    """The store's integrity verdict (SQLite's check; PostgreSQL keeps its own), the env vars
    and the env-var log lines, read through the storage port once the server has stopped."""
    return anyio.run(read_stored, data_dir, database_url)


async def read_stored(
    data_dir: Path, database_url: str | None
) -> tuple[str, dict[str, str], list[str]]:
    store = await open_store(data_dir, url=database_url)
    try:
        verdict = await store.integrity() if isinstance(store, SqliteStore) else "ok"
        values = await store.reads.support.all_env_values()
        lines = await store.reads.support.all_log_messages()
    finally:
        await store.close()
    variables_ = {key: value for (_, key), value in values.items()}
    return verdict, variables_, [line for line in lines if line.startswith("Environment variable ")]


def create_project(url: str, token: str) -> None:
    with httpx.Client(timeout=PROCESS_BOUND) as client:
        assert succeeded(call_tool(client, url, token, "create_project", {"name": "api"}))


def burst_then_kill(data_dir: Path, database_url: str | None = None) -> None:
    """Writers keep setting variables through a server until it is killed with SIGKILL; after a
    restart every acknowledged write is there, and nothing was half written (each value is
    whole, with its one log line)."""
    token = mint_token(data_dir, database_url=database_url)
    with served(data_dir, database_url) as server:
        create_project(server.url, token)
        with Burst(server.url, token) as burst:
            burst.until_acknowledged(40)
            server.process.kill()
            killed = server.wait()
    with served(data_dir, database_url) as server, httpx.Client(timeout=PROCESS_BOUND) as client:
        listed = call_tool(
            client, server.url, token, "list_env_vars", {"project": "api", "limit": 500}
        )
        verdict, variables, lines = stored_variables(data_dir, database_url)
    keys = {item["key"] for item in listed["result"]["structuredContent"]["items"]}
    assert killed == -signal.SIGKILL
    assert burst.refused == []
    assert set(burst.acknowledged) <= keys
    assert keys == set(variables) <= set(burst.attempted)
    assert verdict == "ok"
    assert {key: value for key, value in variables.items() if value != write_value(key)} == {}
    assert sorted(lines) == sorted(f"Environment variable {key} created." for key in variables)
