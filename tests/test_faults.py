"""Faults the server must survive: clients that go away mid-request, mid-stream and
mid-elicitation (handshake era: the handler runs on; stateless era: it is cancelled), with no
task or file descriptor left behind and everyone else still served; SIGKILL in a burst of
writes; a data directory that is a file, read-only, full or locked; and SIGTERM under load."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import aclosing, closing
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from sp00ky_mcp.engine.config import Limits
from sp00ky_mcp.engine.fixtures import USER_RESPONSE_SCHEMA
from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.product.store.sqlite import DB_NAME, SqliteStore
from tests.faults_support import (
    PROCESS_BOUND,
    Burst,
    StreamingGate,
    back_to,
    burst_then_kill,
    call_body,
    call_headers,
    create_project,
    fd_count,
    footprint,
    mint_token,
    read_only_prefix,
    run_to_exit,
    serve_argv,
    served,
    settled,
    stored_variables,
)
from tests.product_support import ProductEnv
from tests.wire import (
    ENDPOINT,
    LATEST,
    READ_BOUND,
    Gate,
    bounded,
    connect,
    encode_request,
    exchange,
    modern_headers,
    modern_meta,
    open_session,
    parse_head,
    post_headers,
    rpc,
    running,
)

pytestmark = pytest.mark.anyio

ELICITATION = {
    "jsonrpc": "2.0",
    "id": "s-1",
    "method": "elicitation/create",
    "params": {"mode": "form", "message": "Name?", "requestedSchema": USER_RESPONSE_SCHEMA},
}
SHUTTING_DOWN = re.compile(r"^sp00ky-mcp shutting down$")


def text_result(text: str, **extra: Any) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": False, **extra}


def get_headers(session_id: str, **extra: str) -> dict[str, str]:
    return {
        "Accept": "text/event-stream",
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": LATEST,
        **{name.replace("_", "-"): value for name, value in extra.items()},
    }


def in_session(session_id: str) -> dict[str, str]:
    return post_headers(session_id, LATEST)


def stream_of(event_id: str | None) -> str:
    assert event_id is not None
    return event_id.rsplit("_", 1)[0]


async def served_others(server: McpServer) -> int:
    """The status another client's stateless tools/list gets, on a fresh connection.  Its
    bytes arrive after those of any client that went away before, so once it is answered
    (and every task is blocked) the server has also seen those clients go."""
    body = rpc("tools/list", 9, _meta=modern_meta())
    reply = await exchange(server, "POST", modern_headers("tools/list"), body)
    await anyio.wait_all_tasks_blocked()
    return reply.status


# --- clients that go away mid-request --------------------------------------------------------


async def test_a_stateless_client_gone_mid_request_cancels_its_handler_and_leaves_nothing() -> None:
    gate = Gate()
    call = rpc("tools/call", 1, name="gate", arguments={}, _meta=modern_meta())
    async with running(catalogue=gate.catalogue()) as server:
        baseline = await footprint(server)
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, modern_headers("tools/call", "gate"), call)
            await bounded(gate.entered)
            meanwhile = await served_others(server)
        await bounded(gate.cancelled)
        after = await back_to(server, baseline)
        later = await served_others(server)
    assert not gate.release.is_set()
    assert (meanwhile, later) == (200, 200)
    assert after == baseline


async def test_a_handshake_client_gone_mid_request_leaves_its_handler_to_finish_then_nothing() -> (
    None
):
    gate = Gate()
    call = rpc("tools/call", 1, name="gate", arguments={})
    async with running(catalogue=gate.catalogue()) as server:
        session_id = await open_session(server)
        baseline = await footprint(server)
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, in_session(session_id), call)
            await bounded(gate.entered)
        meanwhile = await served_others(server)
        cancelled_by_disconnect = gate.cancelled.is_set()
        gate.release.set()
        after = await back_to(server, baseline)
    assert meanwhile == 200
    assert not cancelled_by_disconnect
    assert not gate.cancelled.is_set()
    assert after == baseline


async def test_a_handshake_client_gone_mid_request_frees_its_connection_slot_and_fd_at_once() -> (
    None
):
    gate = Gate()
    call = rpc("tools/call", 1, name="gate", arguments={})
    async with running(Limits(max_connections=1), gate.catalogue()) as server:
        session_id = await open_session(server)
        baseline = await footprint(server)
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, in_session(session_id), call)
            await bounded(gate.entered)
        fds = await settled(fd_count, baseline.fds, bound=0.5)
        other = await exchange(server, "POST", in_session(session_id), rpc("ping", 2))
        gate.release.set()
    assert other.status == 200
    assert fds == baseline.fds


# --- clients that go away mid-stream ---------------------------------------------------------


async def test_a_handshake_client_gone_mid_stream_resumes_it_and_gets_its_handlers_result() -> None:
    gate = StreamingGate()
    call = rpc("tools/call", 4, name="held", arguments={}, _meta={"progressToken": "p"})
    async with running(catalogue=gate.catalogue()) as server:
        session_id = await open_session(server)
        baseline = await footprint(server)
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, in_session(session_id), call)
            async with aclosing(wire.events(await wire.head())) as events:
                seen = [await anext(events), await anext(events)]
        meanwhile = await served_others(server)
        ran_on = not gate.cancelled.is_set()
        gate.release.set()
        stream = stream_of(seen[0].id)
        async with connect(server) as wire:
            await wire.request(
                "GET", ENDPOINT, get_headers(session_id, Last_Event_ID=f"{stream}_1")
            )
            rest = [event async for event in wire.events(await wire.head())]
        after = await back_to(server, baseline)
    progress = {"progressToken": "p", "progress": 1, "total": 2, "message": "half way"}
    assert seen[1].json() == {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": progress,
    }
    assert (meanwhile, ran_on) == (200, True)
    assert [event.id for event in rest] == [f"{stream}_2"]
    assert rest[0].json() == {"jsonrpc": "2.0", "id": 4, "result": text_result("released")}
    assert after == baseline


async def test_a_stateless_client_gone_mid_stream_cancels_its_handler_and_leaves_nothing() -> None:
    gate = StreamingGate()
    meta = {**modern_meta(), "progressToken": "p"}
    call = rpc("tools/call", 1, name="held", arguments={}, _meta=meta)
    async with running(catalogue=gate.catalogue()) as server:
        baseline = await footprint(server)
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, modern_headers("tools/call", "held"), call)
            async with aclosing(wire.events(await wire.head())) as events:
                progress = await anext(events)
        await bounded(gate.cancelled)
        after = await back_to(server, baseline)
        later = await served_others(server)
    assert progress.json()["method"] == "notifications/progress"
    assert not gate.release.is_set()
    assert later == 200
    assert after == baseline


async def test_a_get_stream_whose_client_goes_away_leaves_nothing_and_can_be_opened_again() -> None:
    async with running() as server:
        session_id = await open_session(server)
        baseline = await footprint(server)
        async with connect(server) as wire:
            await wire.request("GET", ENDPOINT, get_headers(session_id))
            async with aclosing(wire.events(await wire.head())) as events:
                await anext(events)
        after = await back_to(server, baseline)
        async with connect(server) as wire:
            await wire.request("GET", ENDPOINT, get_headers(session_id))
            reopened = await wire.head()
    assert after == baseline
    assert reopened.status == 200


async def test_a_listen_stream_whose_client_goes_away_is_forgotten_and_leaves_nothing() -> None:
    listen = rpc(
        "subscriptions/listen", "l-1", notifications={"toolsListChanged": True}, _meta=modern_meta()
    )
    trigger = rpc(
        "tools/call", 2, name="test_trigger_tool_change", arguments={}, _meta=modern_meta()
    )
    async with running() as server:
        baseline = await footprint(server)
        async with connect(server) as wire:
            await wire.request("POST", ENDPOINT, modern_headers("subscriptions/listen"), listen)
            async with aclosing(wire.events(await wire.head())) as events:
                acknowledged = await anext(events)
        listeners = await settled(lambda: len(server.service.listeners.active), 0)
        after = await back_to(server, baseline)
        triggered = await exchange(
            server, "POST", modern_headers("tools/call", "test_trigger_tool_change"), trigger
        )
    assert acknowledged.json()["method"] == "notifications/subscriptions/acknowledged"
    assert listeners == 0
    assert after == baseline
    assert triggered.status == 200


# --- clients that go away mid-elicitation ----------------------------------------------------


async def elicit_then_leave(server: McpServer, session_id: str, request_id: int) -> str:
    """Calls test_elicitation, reads the elicitation request, and goes away; the stream id."""
    call = rpc("tools/call", request_id, name="test_elicitation", arguments={"message": "Name?"})
    async with connect(server) as wire:
        await wire.request("POST", ENDPOINT, in_session(session_id), call)
        async with aclosing(wire.events(await wire.head())) as events:
            priming, asked = await anext(events), await anext(events)
    assert asked.json() == ELICITATION
    assert await served_others(server) == 200
    return stream_of(priming.id)


async def test_a_handshake_client_gone_mid_elicitation_resumes_answers_and_gets_the_result() -> (
    None
):
    async with running() as server:
        session_id = await open_session(server, capabilities={"elicitation": {}})
        baseline = await footprint(server)
        stream = await elicit_then_leave(server, session_id, 8)
        answer = {
            "jsonrpc": "2.0",
            "id": "s-1",
            "result": {"action": "accept", "content": {"response": "Ada"}},
        }
        async with connect(server) as wire:
            await wire.request(
                "GET", ENDPOINT, get_headers(session_id, Last_Event_ID=f"{stream}_0")
            )
            async with aclosing(wire.events(await wire.head())) as events:
                replayed = await anext(events)
                answered = await exchange(
                    server, "POST", in_session(session_id), json.dumps(answer).encode()
                )
                rest = [event async for event in events]
        after = await back_to(server, baseline)
    text = 'User response: action=accept, content={"response":"Ada"}'
    assert (replayed.id, replayed.json()) == (f"{stream}_1", ELICITATION)
    assert (answered.status, answered.body) == (202, b"")
    assert [event.id for event in rest] == [f"{stream}_2"]
    assert rest[0].json() == {"jsonrpc": "2.0", "id": 8, "result": text_result(text)}
    assert after == baseline


async def test_a_handshake_session_deleted_mid_elicitation_ends_its_handler_leaving_nothing() -> (
    None
):
    async with running() as server:
        session_id = await open_session(server, capabilities={"elicitation": {}})
        baseline = await footprint(server)
        await elicit_then_leave(server, session_id, 8)
        deleted = await exchange(server, "DELETE", {**in_session(session_id), "Accept": "*/*"})
        after = await back_to(server, baseline)
        others = await served_others(server)
    assert deleted.status == 200
    assert after == baseline
    assert others == 200


async def test_a_stateless_client_gone_instead_of_answering_input_required_can_still_retry() -> (
    None
):
    """The stateless era keeps nothing between rounds: the round's state travels with the
    client, so a client that goes away leaves nothing behind, and its retry still works."""
    name = "test_input_required_result_elicitation"
    meta = modern_meta({"elicitation": {}})
    headers = modern_headers("tools/call", name)
    async with running() as server:
        baseline = await footprint(server)
        first = await exchange(
            server, "POST", headers, rpc("tools/call", 1, name=name, arguments={}, _meta=meta)
        )
        after = await back_to(server, baseline)
        answers = {"user_name": {"action": "accept", "content": {"name": "Ada"}}}
        retry = rpc(
            "tools/call",
            2,
            name=name,
            arguments={},
            inputResponses=answers,
            requestState=first.json()["result"]["requestState"],
            _meta=meta,
        )
        done = await exchange(server, "POST", headers, retry)
    assert first.json()["result"]["resultType"] == "input_required"
    assert after == baseline
    assert done.json()["result"]["content"] == [{"type": "text", "text": "Hello, Ada!"}]


async def test_shutdown_cancels_a_handler_that_outlives_the_grace_period_and_returns() -> None:
    gate = Gate()
    call = rpc("tools/call", 1, name="gate", arguments={}, _meta=modern_meta())
    async with (
        running(Limits(shutdown_grace=0.2), gate.catalogue()) as server,
        connect(server) as wire,
    ):
        await wire.request("POST", ENDPOINT, modern_headers("tools/call", "gate"), call)
        await bounded(gate.entered)
        server.shutdown()
        with anyio.fail_after(PROCESS_BOUND):
            await server.wait_stopped()
        await bounded(gate.cancelled)
        closed = await wire.closed()
    assert closed


# --- SIGKILL in a burst of writes ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_write_acknowledged_before_a_sigkill_is_there_after_restart_and_nothing_half_written(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = None if backend == "sqlite" else request.getfixturevalue("postgres_database_url")
    burst_then_kill(tmp_path / "data", url)


# --- a data directory that cannot be used ----------------------------------------------------


def test_a_data_directory_that_is_a_regular_file_stops_serve_with_one_sentence(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory")
    status, out, err = run_to_exit(serve_argv(data_dir))
    assert (status, out) == (1, "")
    assert err == (
        f"spky: The data directory {data_dir} is a file, not a directory; "
        "pass another --data-dir.\n"
    )
    assert data_dir.read_text() == "not a directory"


def test_serve_told_to_stop_as_soon_as_it_listens_stops_gracefully_and_exits_0(
    tmp_path: Path,
) -> None:
    with served(tmp_path / "data") as server:
        server.signal(signal.SIGTERM)
        server.line(SHUTTING_DOWN)
        status = server.wait()
    assert status == 0


def read_only(path: Path) -> tuple[str, ...]:
    prefix = read_only_prefix(path)
    if prefix is None:
        pytest.skip(
            "needs a read-only mount (these tests run as root, which permission bits do not "
            "stop) and this machine does not let unshare --mount bind one"
        )
    return prefix


def test_a_read_only_data_directory_stops_serve_with_one_sentence(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    status, out, err = run_to_exit(serve_argv(data_dir, read_only(data_dir)))
    assert (status, out) == (1, "")
    assert err == (
        f"spky: Cannot open the store at {data_dir / DB_NAME}: unable to open database file; "
        "check that the data directory is writable, has free space and is not locked.\n"
    )
    assert list(data_dir.iterdir()) == []


def test_a_read_only_store_file_stops_serve_with_one_sentence(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    mint_token(data_dir)
    with served(data_dir) as server:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    before = (data_dir / DB_NAME).read_bytes()
    status, out, err = run_to_exit(serve_argv(data_dir, read_only(data_dir / DB_NAME)))
    assert (status, out) == (1, "")
    assert err == (
        f"spky: The store at {data_dir / DB_NAME} is read-only; make it and its directory "
        "writable, or pass another --data-dir.\n"
    )
    assert (data_dir / DB_NAME).read_bytes() == before


@pytest.fixture
def locked_store(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose store another process holds the write lock of."""
    data_dir = tmp_path / "data"
    mint_token(data_dir)
    with closing(sqlite3.connect(data_dir / DB_NAME, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        yield data_dir
        holder.execute("ROLLBACK")


def test_a_store_locked_by_another_process_stops_serve_with_one_sentence(
    locked_store: Path,
) -> None:
    status, out, err = run_to_exit(serve_argv(locked_store))
    assert (status, out) == (1, "")
    assert err == (
        f"spky: The store at {locked_store / DB_NAME} is locked by another process; stop that "
        "process or pass another --data-dir.\n"
    )


# --- a store that fails while serving: a clear error per call, nothing changed -----------------

STORE_FULL = (
    "The server's data store is full, so nothing was changed; try again once its operator "
    "has freed disk space."
)
STORE_LOCKED = (
    "The server's data store is locked by another process, so nothing was changed; try "
    "again shortly."
)


def sqlite_of(product: ProductEnv) -> SqliteStore:
    """The embedded store under `product`: these faults are SQLite's own (a full file, a lock
    held by another process)."""
    assert isinstance(product.store, SqliteStore)
    return product.store


async def ready_project(product: ProductEnv) -> tuple[str, str]:
    """A full token, and one that may see secrets, of a user with the project 'api' and its
    variable KEPT."""
    user = await product.user()
    token = await product.token(user)
    reveal = await product.token(user, "env:read,secrets:reveal", name="reveal")
    await product.structured(token, "create_project", {"name": "api"})
    await product.structured(token, "set_env_var", {"project": "api", "key": "KEPT", "value": "1"})
    return token, reveal


async def variables(product: ProductEnv, reveal: str) -> dict[str, str]:
    listed = await product.structured(reveal, "list_env_vars", {"project": "api", "limit": 500})
    return {item["key"]: item["value"] for item in listed["items"]}


async def test_a_full_store_answers_a_write_with_a_clear_error_and_changes_nothing(
    sqlite_product: ProductEnv,
) -> None:
    product = sqlite_product
    store = sqlite_of(product)
    token, reveal = await ready_project(product)
    before = await variables(product, reveal)
    # SQLite answers a write past max_page_count exactly as it answers a full disk.
    await store.limit_pages(await store.page_count())
    arguments = {"project": "api", "key": "BIG", "value": "x" * 30_000}
    refused = await product.rpc(
        token, "tools/call", {"name": "set_env_var", "arguments": arguments}
    )
    unchanged = await variables(product, reveal)
    await store.limit_pages(None)
    retried = await product.structured(token, "set_env_var", arguments)
    assert refused.status_code == 200
    assert refused.json() == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32603, "message": STORE_FULL},
    }
    assert unchanged == before
    assert await store.integrity() == "ok"
    assert retried["key"] == "BIG"


async def test_a_store_locked_while_serving_answers_a_write_with_a_clear_error_and_changes_nothing(
    sqlite_product: ProductEnv,
) -> None:
    product = sqlite_product
    store = sqlite_of(product)
    token, reveal = await ready_project(product)
    # A token not used yet this minute: its first request would also record its last use.
    fresh = await product.token(await product.user(), name="fresh")
    before = await variables(product, reveal)
    await store.set_busy_timeout(0.05)
    arguments = {"project": "api", "key": "LATE", "value": "1"}
    holding = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    with closing(holding) as holder:
        # Off the event loop, as the lock of another process would be taken (see below).
        await anyio.to_thread.run_sync(holder.execute, "BEGIN EXCLUSIVE")
        refused = await product.rpc(
            fresh, "tools/call", {"name": "set_env_var", "arguments": arguments}
        )
        holder.execute("ROLLBACK")
    unchanged = await variables(product, reveal)
    retried = await product.structured(token, "set_env_var", arguments)
    assert refused.json() == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32603, "message": STORE_LOCKED},
    }
    assert unchanged == before
    assert await variables(product, reveal) == {**before, "LATE": "1"}
    assert retried["created"] is True
    assert await store.integrity() == "ok"


async def test_a_write_waiting_on_another_processs_lock_does_not_stall_other_clients(
    sqlite_product: ProductEnv,
) -> None:
    product = sqlite_product
    store = sqlite_of(product)
    token, reveal = await ready_project(product)
    await store.set_busy_timeout(PROCESS_BOUND)
    arguments = {"project": "api", "key": "LATE", "value": "1"}
    written: list[Any] = []

    async def write() -> None:
        written.append(await product.structured(token, "set_env_var", arguments))

    holding = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    with closing(holding) as holder:
        # Taken off the event loop: a write of the server's own (an audit record, a last use)
        # may hold the lock for a moment, and needs the loop to let it go.
        await anyio.to_thread.run_sync(holder.execute, "BEGIN EXCLUSIVE")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(write)
            with anyio.fail_after(READ_BOUND):
                while not store.writer_busy:
                    await anyio.lowlevel.checkpoint()
            # The write waits on the other process's lock; others are served meanwhile.
            with anyio.fail_after(READ_BOUND):
                served = await variables(product, reveal)
                projects = await product.structured(token, "list_projects", {})
            waiting = (store.writer_busy, len(written))
            holder.execute("ROLLBACK")
    assert served == {"KEPT": "1"}
    assert [item["name"] for item in projects["items"]] == ["api"]
    assert waiting == (True, 0)
    assert written[0]["created"] is True


# --- SIGTERM under load ------------------------------------------------------------------------


def read_reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response from a blocking socket: status, header fields, body (Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response head: {data!r}"
        data += chunk
    raw, _, body = data.partition(b"\r\n\r\n")
    head = parse_head(raw + b"\r\n\r\n")
    size = int(head.get("content-length") or 0)
    while len(body) < size:
        chunk = sock.recv(65536)
        assert chunk, "closed inside a response body"
        body += chunk
    return head.status, dict(head.headers), body


def refused_connection(port: int) -> bool:
    """Polls until a new connection is refused, within the process bound."""
    deadline = time.monotonic() + PROCESS_BOUND
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.01)
    return False


def test_sigterm_under_load_finishes_the_call_in_flight_refuses_new_connections_and_exits_0(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    token = mint_token(data_dir)
    body = json.dumps(
        call_body(1, "set_env_var", {"project": "api", "key": "INFLIGHT", "value": "kept"})
    ).encode()
    headers = {**call_headers(token, "set_env_var"), "Expect": "100-continue"}
    request = encode_request("POST", "/v1/mcp", headers, body)
    with served(data_dir) as server:
        create_project(server.url, token)
        with (
            Burst(server.url, token) as burst,
            socket.create_connection(
                ("127.0.0.1", server.port), timeout=PROCESS_BOUND
            ) as in_flight,
        ):
            in_flight.sendall(request[: len(request) - len(body) // 2])
            interim = read_reply(in_flight)
            burst.until_acknowledged(20)
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            server.line(SHUTTING_DOWN)
            refused = refused_connection(server.port)
            in_flight.sendall(request[len(request) - len(body) // 2 :])
            status, fields, reply = read_reply(in_flight)
            exited = server.wait()
            elapsed = time.monotonic() - started
    verdict, variables_, _ = stored_variables(data_dir)
    assert interim[0] == 100
    assert refused
    assert (status, fields.get("connection")) == (200, "close")
    assert json.loads(reply)["result"]["isError"] is False
    assert exited == 0
    assert elapsed < Limits().shutdown_grace
    assert burst.refused == []
    assert verdict == "ok"
    assert variables_["INFLIGHT"] == "kept"
    assert set(burst.acknowledged) <= set(variables_)
